"""Bounded option discovery: which SecDef chain, expiries and strikes are worth qualifying, before any request."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median
from typing import Literal

ExpiryType = Literal["weekly", "monthly", "quarterly"]
TradingClassRule = Literal["symbol", "richest", "all"]
EXPIRY_TYPES: tuple[ExpiryType, ...] = ("weekly", "monthly", "quarterly")
TRADING_CLASS_RULES: tuple[TradingClassRule, ...] = ("symbol", "richest", "all")
QUARTER_MONTHS = frozenset({3, 6, 9, 12})


@dataclass(frozen=True)
class DiscoveryBounds:
    """What discovery qualifies. `moneyness`: strikes within close x (1 +/- moneyness) (0.2 = +/-20 %);
    `horizon_months`: expiries up to this many calendar months after the trade date; `expiry_types`:
    any of weekly (not the month's third-Friday expiry), monthly (third Friday, or the Thursday before
    it when the Friday is a holiday), quarterly (a monthly of Mar/Jun/Sep/Dec); `weekly_days`: weeklies
    only within this many days; `max_strikes`: per (expiry, right), the strikes nearest the close;
    `trading_class`: 'symbol' (the chain whose trading class is the symbol, else the richest),
    'richest' (the SMART chain with the most strikes) or 'all' (every SMART chain).
    `unbounded=True` qualifies every candidate of the chosen chains (the old behaviour, benchmarks)."""

    moneyness: float = 0.20
    horizon_months: int = 6
    expiry_types: tuple[ExpiryType, ...] = ("weekly", "monthly", "quarterly")
    weekly_days: int = 35
    max_strikes: int = 20
    trading_class: TradingClassRule = "symbol"
    unbounded: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.moneyness <= 10:
            raise ValueError(f"moneyness must be in (0, 10], got {self.moneyness}")
        if self.horizon_months < 1 or self.max_strikes < 1 or self.weekly_days < 0:
            raise ValueError("horizon_months and max_strikes must be >= 1, weekly_days >= 0")
        bad = [t for t in self.expiry_types if t not in EXPIRY_TYPES]
        if bad or not self.expiry_types:
            raise ValueError(f"expiry_types must be a non-empty subset of {EXPIRY_TYPES}, got {self.expiry_types}")
        if self.trading_class not in TRADING_CLASS_RULES:
            raise ValueError(f"trading_class must be one of {TRADING_CLASS_RULES}, got {self.trading_class!r}")


@dataclass(frozen=True)
class Chain:
    """One SecDef answer (exchange SMART): trading class, multiplier, expiries (YYYYMMDD) and the
    strike list, which IB gives as the union over all expiries."""

    trading_class: str
    multiplier: str
    expiries: tuple[str, ...]
    strikes: tuple[float, ...]


@dataclass(frozen=True)
class Candidate:
    """An option worth qualifying."""

    trading_class: str
    multiplier: str
    expiry: str
    strike: float
    right: Literal["C", "P"]


def third_friday(year: int, month: int) -> date:
    """The third Friday of the month."""
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def expiry_type(expiry: date) -> ExpiryType:
    """quarterly / monthly for the third-Friday expiry (or the Thursday before it), else weekly."""
    friday = third_friday(expiry.year, expiry.month)
    if expiry in (friday, friday - timedelta(days=1)):
        return "quarterly" if expiry.month in QUARTER_MONTHS else "monthly"
    return "weekly"


def add_months(day: date, months: int) -> date:
    """`day` plus calendar months, clipped to the month's last day."""
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def choose_chains(chains: Sequence[Chain], symbol: str, rule: TradingClassRule) -> list[Chain]:
    """The SMART chains to use: see DiscoveryBounds.trading_class."""
    if rule == "all" or not chains:
        return list(chains)
    richest = max(chains, key=lambda c: (len(c.strikes), len(c.expiries), c.trading_class == symbol))
    if rule == "symbol":
        own = [c for c in chains if c.trading_class == symbol.upper()]
        if own:
            return [max(own, key=lambda c: len(c.strikes))]
    return [richest]


def keep_expiry(expiry: date, today: date, bounds: DiscoveryBounds) -> bool:
    """Unexpired, within the horizon, of a wanted type (weeklies only within `weekly_days`)."""
    if expiry < today or expiry > add_months(today, bounds.horizon_months):
        return False
    kind = expiry_type(expiry)
    if kind == "weekly" and (expiry - today).days > bounds.weekly_days:
        return False
    return kind in bounds.expiry_types


def band_strikes(strikes: Iterable[float], close: float, bounds: DiscoveryBounds) -> list[float]:
    """Strikes within the moneyness band, the `max_strikes` nearest the close (ties: lower first), ascending."""
    lo, hi = close * (1 - bounds.moneyness), close * (1 + bounds.moneyness)
    inside = sorted({float(s) for s in strikes if lo <= s <= hi}, key=lambda s: (abs(s - close), s))
    return sorted(inside[: bounds.max_strikes])


def candidates(
    chains: Sequence[Chain], symbol: str, today: date, close: float | None, bounds: DiscoveryBounds
) -> list[Candidate]:
    """Every (expiry, strike, right) to qualify, ordered by (trading class, expiry, strike, right).
    `close`: the underlying's last completed daily close; None (no close to be had) centres the band
    on the chain's median strike. `bounds.unbounded` keeps every unexpired expiry and strike of
    every chain (the unbounded discovery, for comparison)."""
    out: list[Candidate] = []
    seen: set[tuple[str, str, float, str]] = set()
    for chain in choose_chains(chains, symbol, "all" if bounds.unbounded else bounds.trading_class):
        if bounds.unbounded:
            strikes = sorted({float(s) for s in chain.strikes})
        else:
            centre = close if close is not None and close > 0 else median(chain.strikes) if chain.strikes else 0.0
            strikes = band_strikes(chain.strikes, centre, bounds)
        for expiry in sorted(chain.expiries):
            day = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8]))
            if day < today or not (bounds.unbounded or keep_expiry(day, today, bounds)):
                continue
            for strike in strikes:
                for right in ("C", "P"):
                    key = (chain.trading_class, expiry, strike, right)
                    if key not in seen:
                        seen.add(key)
                        out.append(Candidate(chain.trading_class, chain.multiplier, expiry, strike, right))
    return out
