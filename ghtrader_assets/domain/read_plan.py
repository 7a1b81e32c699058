"""How a read over trading days is cut into chunks: one chunk per ISO calendar week of trading days, in date
order. A chunk is the unit of one Parquet export and of the local cache; a week that the read covers whole
can be cached, a week it covers in part is read for the requested days only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ghtrader_assets.domain.calendar import TradingCalendar


@dataclass(frozen=True)
class Chunk:
    """Consecutive trading days of one ISO week that a read asks for (`days`), and whether they are the
    whole week (`whole`: every trading day of that week in the calendar)."""

    key: str  # YYYY-Www (ISO year and week)
    days: tuple[date, ...]
    whole: bool

    @property
    def first(self) -> date:
        return self.days[0]

    @property
    def last(self) -> date:
        return self.days[-1]


def week_key(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def plan_chunks(calendar: TradingCalendar, days: Sequence[date]) -> list[Chunk]:
    """The requested trading days (sorted, any subset of the calendar) grouped by ISO week, in order."""
    groups: dict[str, list[date]] = {}
    for day in sorted(days):
        groups.setdefault(week_key(day), []).append(day)
    return [Chunk(key, tuple(chunk_days), chunk_days == _week_days(calendar, chunk_days[0]))
            for key, chunk_days in groups.items()]


def _week_days(calendar: TradingCalendar, day: date) -> list[date]:
    """Every trading day of `day`'s ISO week within the calendar."""
    monday = date.fromordinal(day.toordinal() - day.weekday())
    sunday = date.fromordinal(monday.toordinal() + 6)
    lo, hi = max(monday, calendar.first), min(sunday, calendar.last)
    return calendar.between(lo, hi) if lo <= hi else []
