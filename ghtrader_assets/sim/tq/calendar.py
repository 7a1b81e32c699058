"""Mainland-China exchange calendar 2023-2026: real holiday closures, trading days, the nights cancelled."""

from __future__ import annotations

import bisect
from datetime import date, timedelta
from functools import lru_cache

CAL_START = date(2023, 1, 1)
CAL_END = date(2026, 12, 31)

# Exchange closures (inclusive ranges; weekends inside a range are listed too, like the vendor's file).
_CLOSURES: tuple[tuple[date, date], ...] = (
    (date(2022, 12, 31), date(2023, 1, 2)),  # New Year
    (date(2023, 1, 21), date(2023, 1, 27)),  # Spring Festival
    (date(2023, 4, 5), date(2023, 4, 5)),  # Qingming
    (date(2023, 4, 29), date(2023, 5, 3)),  # Labour Day
    (date(2023, 6, 22), date(2023, 6, 24)),  # Dragon Boat
    (date(2023, 9, 29), date(2023, 10, 6)),  # Mid-Autumn + National Day
    (date(2023, 12, 30), date(2024, 1, 1)),
    (date(2024, 2, 9), date(2024, 2, 17)),  # exchanges also closed Fri 9 Feb
    (date(2024, 4, 4), date(2024, 4, 6)),
    (date(2024, 5, 1), date(2024, 5, 5)),
    (date(2024, 6, 8), date(2024, 6, 10)),
    (date(2024, 9, 15), date(2024, 9, 17)),
    (date(2024, 10, 1), date(2024, 10, 7)),
    (date(2025, 1, 1), date(2025, 1, 1)),
    (date(2025, 1, 28), date(2025, 2, 4)),
    (date(2025, 4, 4), date(2025, 4, 6)),
    (date(2025, 5, 1), date(2025, 5, 5)),
    (date(2025, 5, 31), date(2025, 6, 2)),
    (date(2025, 10, 1), date(2025, 10, 8)),
    (date(2026, 1, 1), date(2026, 1, 3)),
    (date(2026, 2, 15), date(2026, 2, 23)),
    (date(2026, 4, 4), date(2026, 4, 6)),
    (date(2026, 5, 1), date(2026, 5, 5)),
    (date(2026, 6, 19), date(2026, 6, 21)),
    (date(2026, 9, 25), date(2026, 9, 27)),
    (date(2026, 10, 1), date(2026, 10, 7)),
)


@lru_cache(maxsize=1)
def holidays() -> tuple[date, ...]:
    """All closure dates within 2023-2026 (what the holiday JSON serves)."""
    out: list[date] = []
    for a, b in _CLOSURES:
        d = a
        while d <= b:
            if CAL_START <= d <= CAL_END:
                out.append(d)
            d += timedelta(days=1)
    return tuple(sorted(out))


@lru_cache(maxsize=1)
def _all_trading_days() -> tuple[date, ...]:
    closed = set(holidays())
    n = (CAL_END - CAL_START).days + 1
    days = (CAL_START + timedelta(days=i) for i in range(n))
    return tuple(d for d in days if d.weekday() < 5 and d not in closed)


def trading_days(start: date = CAL_START, end: date = CAL_END) -> list[date]:
    """Trading days in [start, end]."""
    days = _all_trading_days()
    return list(days[bisect.bisect_left(days, start): bisect.bisect_right(days, end)])


def is_trading_day(d: date) -> bool:
    days = _all_trading_days()
    i = bisect.bisect_left(days, d)
    return i < len(days) and days[i] == d


def prev_trading_day(d: date) -> date | None:
    """The last trading day strictly before d (None before the calendar)."""
    days = _all_trading_days()
    i = bisect.bisect_left(days, d)
    return days[i - 1] if i > 0 else None


def next_trading_day(d: date) -> date | None:
    days = _all_trading_days()
    i = bisect.bisect_right(days, d)
    return days[i] if i < len(days) else None


# Trading days that open without a night session: the exchanges' holiday notices cancel night trading on the
# evening before each closure (e.g. DCE's 2026 New Year notice: "no night trading session on the night of
# December 31, 2025"; the market reopens on January 5 with the call auction). Written out from the notices'
# dates, not derived, so the product's night-session rule is tested against the exchanges' own calendar.
NO_NIGHT_SESSION: frozenset[date] = frozenset(date.fromisoformat(d) for d in (
    "2023-01-03 2023-01-30 2023-04-06 2023-05-04 2023-06-26 2023-10-09 "
    "2024-01-02 2024-02-19 2024-04-08 2024-05-06 2024-06-11 2024-09-18 2024-10-08 "
    "2025-01-02 2025-02-05 2025-04-07 2025-05-06 2025-06-03 2025-10-09 "
    "2026-01-05 2026-02-24 2026-04-07 2026-05-06 2026-06-22 2026-09-28 2026-10-08"
).split())


def has_night_session(d: date) -> bool:
    """Whether trading day d opens with a night session (on the previous trading day's evening)."""
    return prev_trading_day(d) is not None and d not in NO_NIGHT_SESSION


def trading_day_of(local_date: date, hour: int) -> date | None:
    """Trading day of a Beijing wall-clock moment: >=18h belongs to the next trading day, <6h to the one after the previous day."""
    if hour >= 18:
        return next_trading_day(local_date)
    if hour < 6:
        return next_trading_day(local_date - timedelta(days=1))
    return local_date if is_trading_day(local_date) else None
