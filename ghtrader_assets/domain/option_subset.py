"""Option subsets: unexpired contracts and the near-the-money minutes subset (first E expiries, K strikes per right)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.us_sessions import NEW_YORK

EXPIRY_CLOSE = time(16, 0)  # US equity options stop trading at 16:00 New York on the expiry date


def is_expired(contract: OptionContract, as_of: datetime) -> bool:
    """True from 16:00 New York on the expiry date; `as_of` must be time-zone aware."""
    return as_of >= datetime.combine(contract.expiry, EXPIRY_CLOSE, NEW_YORK)


def unexpired(contracts: Iterable[OptionContract], as_of: datetime) -> tuple[OptionContract, ...]:
    """Contracts not expired at `as_of`; IB serves no history for expired options, so requesting
    them only produces errors."""
    return tuple(c for c in contracts if not is_expired(c, as_of))


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
) -> tuple[OptionContract, ...]:
    """The minutes subset. Expired expiries are removed first, then the first `expiries` expiry
    dates are kept, and for each (expiry, right) the `strikes_per_right` strikes nearest
    `reference_price` (ties: the lower strike first). Sorted by (expiry, right, strike)."""
    if expiries < 1 or strikes_per_right < 1:
        raise ValueError(f"expiries and strikes_per_right must be >= 1, got {expiries}, {strikes_per_right}")
    live = unexpired(contracts, as_of)
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
