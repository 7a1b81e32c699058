"""Futures identity rules, in one place: the exchanges, the grammar of a variety ('SHFE.cu'), a contract
('SHFE.cu2403') and the main series ('KQ.m@SHFE.cu'), and which exchanges publish five depth levels.

Every symbol that reaches SQL text or a path is checked here first.
"""

from __future__ import annotations

import re
from datetime import date

EXCHANGES = ("SHFE", "DCE", "CZCE", "CFFEX", "INE", "GFEX")
# Futures exchanges whose ticks carry five depth levels; the others publish level 1 only (PRD section 4
# gives the sources). A day served with another depth than its exchange's is reported, never reshaped:
# the download keeps whatever levels the vendor sent.
L5_EXCHANGES = frozenset({"SHFE", "INE"})
MAIN_PREFIX = "KQ.m@"  # TqSdk's continuous main series of a variety

_EXCHANGE = "|".join(EXCHANGES)
_VARIETY = re.compile(rf"^({_EXCHANGE})\.([A-Za-z]{{1,4}})$")
_CONTRACT = re.compile(rf"^({_EXCHANGE})\.([A-Za-z]{{1,4}})(\d{{3,4}})$")


class SymbolError(ValueError):
    """Not a futures variety, contract or main series of the accepted grammar."""


def parse_variety(variety: str) -> tuple[str, str]:
    """'SHFE.cu' -> ('SHFE', 'cu'); anything else (unknown exchange, metacharacters) is an error."""
    m = _VARIETY.fullmatch(variety) if isinstance(variety, str) else None
    if not m:
        raise SymbolError(f"not a futures variety of the form EXCHANGE.product (e.g. SHFE.cu): {variety!r}")
    return m.group(1), m.group(2)


def parse_variety_list(text: str) -> dict[str, date | None]:
    """GHTRADER_VARIETIES: 'SHFE.cu:2016-01-04,GFEX.si' -> {'SHFE.cu': date(2016, 1, 4), 'GFEX.si': None}.
    A date is the first trading day the user wants for that variety (its window never starts before the
    vendor lists it); without one the window starts where the vendor's history does."""
    out: dict[str, date | None] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, start = item.partition(":")
        parse_variety(name.strip())
        try:
            out[name.strip()] = date.fromisoformat(start.strip()) if start.strip() else None
        except ValueError:
            raise SymbolError(f"not a start date (YYYY-MM-DD) for {name.strip()}: {start.strip()!r}") from None
    return out


def parse_contract(contract: str) -> tuple[str, str, str]:
    """'SHFE.cu2403' -> ('SHFE', 'cu', '2403'); validated so it can be used in SQL and paths."""
    m = _CONTRACT.fullmatch(contract) if isinstance(contract, str) else None
    if not m:
        raise SymbolError(f"not a futures contract of the form EXCHANGE.productYYMM: {contract!r}")
    return m.group(1), m.group(2), m.group(3)


def variety_of(contract: str) -> str:
    """'SHFE.cu2403' -> 'SHFE.cu'."""
    exchange, product, _ = parse_contract(contract)
    return f"{exchange}.{product}"


def main_symbol(variety: str) -> str:
    """The continuous main series of a variety: 'SHFE.cu' -> 'KQ.m@SHFE.cu'."""
    parse_variety(variety)
    return f"{MAIN_PREFIX}{variety}"


def has_l5_depth(variety: str) -> bool:
    """Whether the variety's exchange publishes depth levels 2-5."""
    return parse_variety(variety)[0] in L5_EXCHANGES


def expected_depth(variety: str) -> int:
    """The depth levels a day of the variety should arrive with: 5 on SHFE and INE, else 1."""
    return 5 if has_l5_depth(variety) else 1


def check_symbol(symbol: str) -> str:
    """A contract ('SHFE.cu2403') or main series ('KQ.m@SHFE.cu'); anything else is refused."""
    try:
        if isinstance(symbol, str) and symbol.startswith(MAIN_PREFIX):
            parse_variety(symbol[len(MAIN_PREFIX):])
        else:
            parse_contract(symbol)
    except SymbolError:
        raise SymbolError(f"not a futures contract or {MAIN_PREFIX} main symbol: {symbol!r}") from None
    return symbol
