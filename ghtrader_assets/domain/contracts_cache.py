"""Contracts cache `{SYMBOL}_{YYYY-MM-DD}.json`: the option contracts discovered for one symbol on one day."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
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


def cache_files(cache_dir: Path, symbol: str) -> list[tuple[date, Path]]:
    """Every cache file of `symbol` under `cache_dir`, oldest first."""
    if not cache_dir.is_dir():
        return []
    found: list[tuple[date, Path]] = []
    for path in cache_dir.iterdir():
        match = _FILE_RE.match(path.name)
        if not match or match["symbol"] != symbol.upper():
            continue
        try:
            found.append((date.fromisoformat(match["day"]), path))
        except ValueError:
            continue
    return sorted(found)


def latest_cache_path(cache_dir: Path, symbol: str) -> Path:
    """The newest cache file of `symbol` (the latest trading day it was discovered on).
    Raises ContractsCacheError when there is none: a missing cache is never rebuilt implicitly."""
    files = cache_files(cache_dir, symbol)
    if not files:
        raise ContractsCacheError(
            f"{cache_dir / (symbol.upper() + '_YYYY-MM-DD.json')}: missing contracts cache for "
            f"{symbol.upper()} (run the contracts stage or drop a cache in)"
        )
    return files[-1][1]


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


def read_cache(path: Path, symbol: str | None = None) -> tuple[OptionContract, ...]:
    """Read and validate one cache file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ContractsCacheError(f"{path}: missing contracts cache") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractsCacheError(f"{path}: cannot read contracts cache: {exc}") from exc
    return parse_cache(text, str(path), symbol)


def read_latest_cache(cache_dir: Path, symbol: str) -> tuple[Path, tuple[OptionContract, ...]]:
    """The newest cache of `symbol` and its contracts; errors as in latest_cache_path / parse_cache."""
    path = latest_cache_path(cache_dir, symbol)
    return path, read_cache(path, symbol)


def dump_cache(contracts: Iterable[OptionContract]) -> str:
    """Cache JSON text, records sorted by (expiry, right, strike, conid)."""
    ordered = sorted(contracts, key=lambda c: (c.expiry, c.right, c.strike, c.conid))
    return json.dumps([c.to_json() for c in ordered], indent=1) + "\n"


def write_cache(cache_dir: Path, symbol: str, day: date, contracts: Sequence[OptionContract]) -> Path:
    """Write `cache_dir/{SYMBOL}_{day}.json` atomically (temp file, fsync, rename)."""
    if not contracts:
        raise ContractsCacheError(f"{cache_path(cache_dir, symbol, day)}: refusing to write an empty cache")
    path = cache_path(cache_dir, symbol, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(dump_cache(contracts))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def find_contracts(cache_dir: Path, symbol: str, conids: Iterable[int]) -> dict[int, OptionContract]:
    """The contracts with these conids from the symbol's caches, newest cache first (each file read
    until all are found); an unreadable older cache is passed over."""
    wanted = set(conids)
    found: dict[int, OptionContract] = {}
    for _, path in reversed(cache_files(cache_dir, symbol)):
        if not wanted:
            break
        try:
            contracts = read_cache(path, symbol)
        except ContractsCacheError:
            continue
        for contract in contracts:
            if contract.conid in wanted:
                found[contract.conid] = contract
                wanted.discard(contract.conid)
    return found
