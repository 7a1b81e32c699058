"""Option subsets: unexpired contracts and the near-the-money minutes subset (first E expiries, K strikes per right)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.expiry import ExpiryRule, is_served, served

DEFAULT_RULE = ExpiryRule()


def is_expired(contract: OptionContract, as_of: datetime, rule: ExpiryRule = DEFAULT_RULE) -> bool:
    """True once IB no longer serves the option (expiry.served_until); `as_of` time-zone aware."""
    return not is_served(contract, as_of, rule)


def unexpired(contracts: Iterable[OptionContract], as_of: datetime,
              rule: ExpiryRule = DEFAULT_RULE) -> tuple[OptionContract, ...]:
    """Contracts IB still serves at `as_of` (see expiry.served)."""
    return served(contracts, as_of, rule)


def median_strike(contracts: Sequence[OptionContract]) -> float:
    """Median of the distinct strikes: the documented fallback reference price when the
    underlying's close cannot be had."""
    strikes = sorted({c.strike for c in contracts})
    if not strikes:
        raise ValueError("no contracts to take a median strike from")
    return float(statistics.median(strikes))


def near_the_money(
    contracts: Iterable[OptionContract],
    as_of: datetime,
    reference_price: float,
    expiries: int,
    strikes_per_right: int,
    rule: ExpiryRule = DEFAULT_RULE,
) -> tuple[OptionContract, ...]:
    """The minutes subset. Expired expiries are removed first, then the first `expiries` expiry
    dates are kept, and for each (expiry, right) the `strikes_per_right` strikes nearest
    `reference_price` (ties: the lower strike first). Sorted by (expiry, right, strike)."""
    if expiries < 1 or strikes_per_right < 1:
        raise ValueError(f"expiries and strikes_per_right must be >= 1, got {expiries}, {strikes_per_right}")
    live = unexpired(contracts, as_of, rule)
    kept_expiries = set(sorted({c.expiry for c in live})[:expiries])
    groups: dict[tuple[date, str], list[OptionContract]] = {}
    for contract in live:
        if contract.expiry in kept_expiries:
            groups.setdefault((contract.expiry, contract.right), []).append(contract)
    chosen: list[OptionContract] = []
    for group in groups.values():
        group.sort(key=lambda c: (abs(c.strike - reference_price), c.strike, c.conid))
        chosen.extend(group[:strikes_per_right])
    return tuple(sorted(chosen, key=lambda c: (c.expiry, c.right, c.strike, c.conid)))
