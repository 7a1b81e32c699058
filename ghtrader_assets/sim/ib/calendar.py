"""NYSE regular sessions in New York time for 2024-2026 (full closures and 13:00 half days)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
FIRST_YEAR, LAST_YEAR = 2024, 2026
OPEN, CLOSE, HALF_CLOSE = time(9, 30), time(16, 0), time(13, 0)

# NYSE published calendars; 2025-01-09 was the national day of mourning for President Carter.
HOLIDAYS: frozenset[date] = frozenset(
    date.fromisoformat(d)
    for d in (
        "2024-01-01 2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19 2024-07-04 2024-09-02 "
        "2024-11-28 2024-12-25 "
        "2025-01-01 2025-01-09 2025-01-20 2025-02-17 2025-04-18 2025-05-26 2025-06-19 2025-07-04 "
        "2025-09-01 2025-11-27 2025-12-25 "
        "2026-01-01 2026-01-19 2026-02-16 2026-04-03 2026-05-25 2026-06-19 2026-07-03 2026-09-07 "
        "2026-11-26 2026-12-25"
    ).split()
)
HALF_DAYS: frozenset[date] = frozenset(
    date.fromisoformat(d)
    for d in "2024-07-03 2024-11-29 2024-12-24 2025-07-03 2025-11-28 2025-12-24 2026-11-27 2026-12-24".split()
)


def _check(day: date) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"simulated NYSE calendar covers {FIRST_YEAR}-{LAST_YEAR}, not {day}")


def is_trading_day(day: date) -> bool:
    """True when NYSE holds a regular session on this day."""
    _check(day)
    return day.weekday() < 5 and day not in HOLIDAYS


def session(day: date) -> tuple[datetime, datetime] | None:
    """The (open, close) of the day's regular session as New York datetimes, or None when closed."""
    if not is_trading_day(day):
        return None
    close = HALF_CLOSE if day in HALF_DAYS else CLOSE
    return datetime.combine(day, OPEN, NY), datetime.combine(day, close, NY)


def trading_days(start: date, end: date) -> list[date]:
    """Trading days in [start, end], clipped to the covered years."""
    start = max(start, date(FIRST_YEAR, 1, 1))
    end = min(end, date(LAST_YEAR, 12, 31))
    days = (start + timedelta(n) for n in range((end - start).days + 1))
    return [d for d in days if is_trading_day(d)]


# Friday closures after the covered years, needed only to place option expiries listed ahead.
LATER_FRIDAY_CLOSURES = frozenset(date.fromisoformat(d) for d in "2027-01-01 2027-03-26 2027-06-18 2027-12-24".split())


def expiry_friday(day: date) -> date:
    """The expiration day for a Friday: the Thursday before when the Friday is a holiday."""
    return day - timedelta(1) if day in HOLIDAYS or day in LATER_FRIDAY_CLOSURES else day
