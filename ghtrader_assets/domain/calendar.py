"""The Chinese futures trading calendar: trading days, the trading day of a tick, night-session rules."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

CST = timezone(timedelta(hours=8), "Asia/Shanghai")  # China has no daylight saving time
NIGHT_START = time(18, 0)  # from 18:00 Beijing a tick belongs to the next trading day
NS_PER_S = 1_000_000_000


class CalendarError(ValueError):
    """A date or range the calendar cannot answer for (outside it, reversed, not a trading day)."""


@dataclass(frozen=True)
class TradingCalendar:
    """Trading days within [first, last] (inclusive calendar bounds), as provided by the vendor."""

    first: date
    last: date
    days: tuple[date, ...]

    @classmethod
    def from_flags(cls, flags: Iterable[tuple[date, bool]]) -> "TradingCalendar":
        """Build from (calendar date, is trading day) pairs covering a contiguous range."""
        pairs = sorted(flags)
        if not pairs:
            raise CalendarError("empty trading calendar")
        for (a, _), (b, _) in zip(pairs, pairs[1:]):
            if (b - a).days != 1:
                raise CalendarError(f"trading calendar has a gap between {a} and {b}")
        return cls(pairs[0][0], pairs[-1][0], tuple(d for d, trading in pairs if trading))

    def _check(self, day: date) -> None:
        if not self.first <= day <= self.last:
            raise CalendarError(f"{day} is outside the trading calendar ({self.first} .. {self.last})")

    def is_trading_day(self, day: date) -> bool:
        self._check(day)
        i = bisect.bisect_left(self.days, day)
        return i < len(self.days) and self.days[i] == day

    def between(self, start: date, end: date) -> list[date]:
        """Trading days in [start, end]; a reversed or out-of-calendar range is an error."""
        if start > end:
            raise CalendarError(f"reversed date range: {start} > {end}")
        self._check(start)
        self._check(end)
        return list(self.days[bisect.bisect_left(self.days, start) : bisect.bisect_right(self.days, end)])

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after `day`."""
        i = bisect.bisect_right(self.days, day)
        if i >= len(self.days):
            raise CalendarError(f"no trading day after {day} within the calendar (ends {self.last})")
        return self.days[i]

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before `day`."""
        i = bisect.bisect_left(self.days, day)
        if i == 0:
            raise CalendarError(f"no trading day before {day} within the calendar (starts {self.first})")
        return self.days[i - 1]

    def trading_day_of(self, datetime_ns: int) -> date:
        """The trading day a tick at `datetime_ns` (epoch ns) belongs to.

        Beijing time >= 18:00 on date D -> the next trading day after D; before 06:00 on D (after
        midnight of a night session) -> the next trading day after D-1; otherwise D itself, which must
        be a trading day. So Friday night belongs to Monday and holidays are skipped.
        """
        local = datetime.fromtimestamp(datetime_ns / NS_PER_S, CST)
        d = local.date()
        if local.time() >= NIGHT_START:
            return self.next_trading_day(d)
        if local.time() < time(6, 0):
            return self.next_trading_day(d - timedelta(days=1))
        if not self.is_trading_day(d):
            raise CalendarError(f"{local.isoformat()} is daytime on {d}, which is not a trading day")
        return d

    def has_night_session(self, day: date) -> bool:
        """Whether trading day `day` opens with a night session on the previous trading day's evening.

        Exchanges cancel it when a holiday lies between the two (the eve of a long holiday); an
        ordinary weekend keeps it (Friday night belongs to Monday).
        """
        prev = self.previous_trading_day(day)
        gap = (prev + timedelta(days=i) for i in range(1, (day - prev).days))
        return all(g.weekday() >= 5 for g in gap)

    def bounds_ns(self, day: date) -> tuple[int, int]:
        """[start, end) in epoch ns of everything that can belong to trading day `day`: from 18:00
        Beijing on the previous trading day to 18:00 Beijing on `day`."""
        if not self.is_trading_day(day):
            raise CalendarError(f"{day} is not a trading day")
        start = datetime.combine(self.previous_trading_day(day), NIGHT_START, CST)
        end = datetime.combine(day, NIGHT_START, CST)
        return int(start.timestamp()) * NS_PER_S, int(end.timestamp()) * NS_PER_S


def current_trading_day(calendar: TradingCalendar, now: datetime) -> date:
    """The trading day in progress (or next to open) at `now`: the one still unfinished, never final."""
    local = now.astimezone(CST)
    d = local.date()
    if local.time() >= NIGHT_START or not calendar.is_trading_day(d):
        return calendar.next_trading_day(d)
    return d


def is_final(calendar: TradingCalendar, day: date, now: datetime) -> bool:
    """A trading day is final once the next one has begun (18:00 Beijing on the day)."""
    return day < current_trading_day(calendar, now)


def due_days(calendar: TradingCalendar, now: datetime, update_at: time, start: date, lookback: int) -> list[date]:
    """Trading days whose data should be in by `now`: every trading day D from `start` whose update time
    (D at `update_at` Beijing) has passed, limited to the last `lookback` of them. Holidays and weekends
    add nothing, so evaluating on them requests nothing new."""
    local = now.astimezone(CST)
    last = min(local.date(), calendar.last)
    if last < start:
        return []
    days = [d for d in calendar.between(max(start, calendar.first), last) if datetime.combine(d, update_at, CST) <= local]
    return days[-lookback:]
