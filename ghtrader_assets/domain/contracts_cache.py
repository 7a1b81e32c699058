"""Contracts cache `{SYMBOL}_{YYYY-MM-DD}.json`: the option contracts of one symbol and day, its layout and checks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

Right = Literal["C", "P"]

_FILE_RE = re.compile(r"^(?P<symbol>.+)_(?P<day>\d{4}-\d{2}-\d{2})\.json$")
_REQUIRED = ("conid", "symbol", "expiry", "right", "strike")


class ContractsCacheError(ValueError):
    """A contracts cache is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class OptionContract:
    """One qualified option contract; `expiry` is the last trading date, `strike` in the contract currency."""

    conid: int
    symbol: str
    expiry: date
    right: Right
    strike: float
    multiplier: str = "100"
    exchange: str = "SMART"
    trading_class: str = ""
    currency: str = "USD"

    def to_json(self) -> dict[str, Any]:
        """The seed's record layout (camelCase `tradingClass` kept for drop-in compatibility)."""
        return {
            "conid": self.conid,
            "symbol": self.symbol,
            "expiry": self.expiry.isoformat(),
            "right": self.right,
            "strike": self.strike,
            "multiplier": self.multiplier,
            "exchange": self.exchange,
            "tradingClass": self.trading_class,
            "currency": self.currency,
        }


def cache_path(cache_dir: Path, symbol: str, day: date) -> Path:
    """`cache_dir/{SYMBOL}_{YYYY-MM-DD}.json`."""
    return cache_dir / f"{symbol.upper()}_{day.isoformat()}.json"


def cache_name_day(name: str, symbol: str) -> date | None:
    """The trade date of a cache file name `{SYMBOL}_{YYYY-MM-DD}.json` of `symbol`, else None."""
    match = _FILE_RE.match(name)
    if not match or match["symbol"] != symbol.upper():
        return None
    try:
        return date.fromisoformat(match["day"])
    except ValueError:
        return None


def parse_cache(text: str, source: str, symbol: str | None = None) -> tuple[OptionContract, ...]:
    """Validate cache JSON text; `symbol`, when given, must match every record. Raises
    ContractsCacheError naming `source` and the first problem found."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractsCacheError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(payload, list):
        raise ContractsCacheError(f"{source}: expected a JSON list of contracts, got {type(payload).__name__}")
    if not payload:
        raise ContractsCacheError(f"{source}: the cache holds no contracts")
    contracts = tuple(_parse_record(item, f"{source}: record {i}") for i, item in enumerate(payload))
    seen: set[int] = set()
    for i, contract in enumerate(contracts):
        if symbol is not None and contract.symbol != symbol.upper():
            raise ContractsCacheError(f"{source}: record {i}: symbol {contract.symbol!r} != {symbol.upper()!r}")
        if contract.conid in seen:
            raise ContractsCacheError(f"{source}: record {i}: duplicate conid {contract.conid}")
        seen.add(contract.conid)
    return contracts


def _parse_record(item: Any, where: str) -> OptionContract:
    if not isinstance(item, dict):
        raise ContractsCacheError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [key for key in _REQUIRED if key not in item]
    if missing:
        raise ContractsCacheError(f"{where}: missing field(s) {', '.join(missing)}")
    conid = item["conid"]
    if isinstance(conid, str) and conid.isdigit():
        conid = int(conid)
    if not isinstance(conid, int) or isinstance(conid, bool) or conid <= 0:
        raise ContractsCacheError(f"{where}: conid must be a positive integer, got {item['conid']!r}")
    try:
        expiry = date.fromisoformat(str(item["expiry"]))
    except ValueError as exc:
        raise ContractsCacheError(f"{where}: expiry must be YYYY-MM-DD, got {item['expiry']!r}") from exc
    if len(str(item["expiry"])) != 10:
        raise ContractsCacheError(f"{where}: expiry must be YYYY-MM-DD, got {item['expiry']!r}")
    right = item["right"]
    if right not in ("C", "P"):
        raise ContractsCacheError(f"{where}: right must be 'C' or 'P', got {right!r}")
    strike = item["strike"]
    if isinstance(strike, bool) or not isinstance(strike, int | float) or not math.isfinite(strike) or strike <= 0:
        raise ContractsCacheError(f"{where}: strike must be a positive number, got {strike!r}")
    symbol = item["symbol"]
    if not isinstance(symbol, str) or not symbol.strip():
        raise ContractsCacheError(f"{where}: symbol must be a non-empty string, got {symbol!r}")
    return OptionContract(
        conid=conid,
        symbol=symbol.strip().upper(),
        expiry=expiry,
        right=right,
        strike=float(strike),
        multiplier=_text(item.get("multiplier", "100"), where, "multiplier"),
        exchange=_text(item.get("exchange", "SMART"), where, "exchange"),
        trading_class=_text(item.get("tradingClass", ""), where, "tradingClass"),
        currency=_text(item.get("currency", "USD"), where, "currency"),
    )


def _text(value: Any, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ContractsCacheError(f"{where}: {field} must be a string, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def dump_cache(contracts: Iterable[OptionContract]) -> str:
    """Cache JSON text, records sorted by (expiry, right, strike, conid)."""
    ordered = sorted(contracts, key=lambda c: (c.expiry, c.right, c.strike, c.conid))
    return json.dumps([c.to_json() for c in ordered], indent=1) + "\n"
