"""The main-contract schedule: which contract is main on each trading day, grouped into segments.

Sources produce a day -> contract mapping; `build_schedule` turns it into rows whose segment_id and
schedule_hash depend only on the segment's own contract and first day, so extending the window by
new days never changes the rows of days already scheduled.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from ghtrader_assets.domain.calendar import CST, CalendarError, TradingCalendar
from ghtrader_assets.domain.symbols import main_symbol, parse_contract, parse_variety  # noqa: F401 - re-exported


class ScheduleError(ValueError):
    """A schedule that cannot be built from the given input."""


@dataclass(frozen=True)
class ScheduleRow:
    """One trading day of one variety's schedule."""

    trading_day: date
    main_contract: str
    segment_id: int
    schedule_hash: int
    # Computed before the source could answer for the day: recomputed by the next run, never frozen.
    provisional: bool = False

    def same_assignment(self, other: "ScheduleRow | None") -> bool:
        """Same contract, segment and hash (what the day's main_l5 rows carry)."""
        return other is not None and (self.main_contract, self.segment_id, self.schedule_hash) == (
            other.main_contract, other.segment_id, other.schedule_hash)


@dataclass(frozen=True)
class Revision:
    """A stored, settled day that the source now assigns differently."""

    trading_day: date
    old: ScheduleRow
    new: ScheduleRow

    @property
    def contract_changed(self) -> bool:
        return self.old.main_contract != self.new.main_contract

    def describe(self) -> str:
        return (f"{self.trading_day}: {self.old.main_contract} (segment {self.old.segment_id}) -> "
                f"{self.new.main_contract} (segment {self.new.segment_id})")


def decidable_from(previous_trading_day: date, published_at: time) -> datetime:
    """When the vendor's table has the trading day after `previous_trading_day`: it publishes the next
    day's main contract that evening at `published_at` (Beijing); the day must also have opened."""
    return datetime.combine(previous_trading_day, published_at, CST)


@dataclass(frozen=True)
class ScheduleRules:
    """When a day is decided, how far back the source is asked again, and which revisions need a confirmation."""

    now: datetime | None = None  # None: every day is decidable (a backfill of the past)
    published_at: time = time(20, 0)  # Beijing, on the previous trading day: the vendor's table has the day
    night_open: time | None = time(21, 0)  # the variety's night open (None: no night session)
    day_open: time = time(9, 0)
    recheck_days: int = 10  # settled days asked again every run (all days for the continuous table)
    confirm_older_than: int = 0  # revisions of days older than this many trading days need confirm; 0 = none
    confirmed: bool = False

    def decidable(self, calendar: TradingCalendar, day: date) -> bool:
        """Whether the source can answer for `day` at `now`: the vendor has published it (`published_at` on
        the previous trading day) and the day has opened (its night open, or its day open)."""
        if self.now is None:
            return True
        try:
            previous = calendar.previous_trading_day(day)
        except CalendarError:
            return True
        if self.night_open is not None and calendar.has_night_session(day):
            opens = datetime.combine(previous, self.night_open, CST)
        else:
            opens = datetime.combine(day, self.day_open, CST)
        return self.now >= max(opens, decidable_from(previous, self.published_at))


def diff_schedule(
    stored: Mapping[date, ScheduleRow], computed: Sequence[ScheduleRow]
) -> tuple[list[ScheduleRow], list[Revision]]:
    """Rows to write (new days, changed days, provisional status changed) and the revisions among them
    (days stored as settled whose contract, segment or hash the source now gives differently)."""
    to_write: list[ScheduleRow] = []
    revisions: list[Revision] = []
    for row in computed:
        old = stored.get(row.trading_day)
        if old is not None and row.same_assignment(old) and old.provisional == row.provisional:
            continue
        to_write.append(row)
        if old is not None and not old.provisional and not row.same_assignment(old):
            revisions.append(Revision(row.trading_day, old, row))
    return to_write, revisions


def day_contracts_from_events(
    days: Sequence[date], initial: str | None, events: Iterable[tuple[date, str]]
) -> dict[date, str]:
    """Expand change events (effective trading day, new main contract) to every day in `days`, as-of:
    a day takes the latest event on or before it, so an event dated on a non-trading day still counts."""
    ordered = sorted(events)
    event_days = [d for d, _ in ordered]
    out: dict[date, str] = {}
    for day in days:
        i = bisect.bisect_right(event_days, day)
        contract = ordered[i - 1][1] if i else initial
        if contract is None:
            raise ScheduleError(f"no main contract known on or before {day}")
        out[day] = contract
    return out


def day_contracts_from_change_points(days: Sequence[date], change_points: Iterable[tuple[date, str]]) -> dict[date, str]:
    """The continuous table's change points, forward-filled; days before the first point are an error."""
    return day_contracts_from_events(days, None, change_points)


def day_contracts_from_open_interest(
    days: Sequence[date], open_interest: Mapping[date, Mapping[str, float]]
) -> dict[date, str]:
    """The open-interest rule: the main contract switches on the next trading day after another,
    later-delivery contract closes with more open interest; it never switches back to an earlier one."""
    out: dict[date, str] = {}
    current: str | None = None
    pending: str | None = None
    for day in days:
        if pending is not None:
            current, pending = pending, None
        oi = open_interest.get(day) or {}
        if current is None:
            if not oi:
                raise ScheduleError(f"no open interest on {day} to pick the first main contract")
            current = max(sorted(oi), key=lambda c: oi[c])
        out[day] = current
        leader = max(sorted(oi), key=lambda c: oi[c]) if oi else current
        if leader != current and _delivery(leader) > _delivery(current) and oi[leader] > oi.get(current, 0.0):
            pending = leader
    return out


def _delivery(contract: str) -> str:
    return parse_contract(contract)[2].rjust(4, "0")


def build_schedule(
    variety: str, day_contracts: Mapping[date, str], provisional: Iterable[date] = ()
) -> list[ScheduleRow]:
    """Group consecutive days with the same contract into segments. segment_id is the segment's first
    trading day as YYYYMMDD; schedule_hash is FNV-1a 64 of 'variety|contract|first day'."""
    parse_variety(variety)
    pending = set(provisional)
    rows: list[ScheduleRow] = []
    start: date | None = None
    previous: str | None = None
    for day in sorted(day_contracts):
        contract = day_contracts[day]
        parse_contract(contract)
        if contract != previous:
            start, previous = day, contract
        assert start is not None
        rows.append(ScheduleRow(day, contract, segment_id(start), schedule_hash(variety, contract, start),
                                day in pending))
    return rows


def segment_id(first_day: date) -> int:
    return first_day.year * 10000 + first_day.month * 100 + first_day.day


def schedule_hash(variety: str, contract: str, first_day: date) -> int:
    h = 0xCBF29CE484222325
    for byte in f"{variety}|{contract}|{first_day.isoformat()}".encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h - 2**64 if h >= 2**63 else h


def roll_days(rows: Sequence[ScheduleRow]) -> list[tuple[date, str]]:
    """(first day, contract) of each segment, in order."""
    out: list[tuple[date, str]] = []
    for row in rows:
        if not out or out[-1][1] != row.main_contract:
            out.append((row.trading_day, row.main_contract))
    return out


def disagreements(a: Mapping[date, str], b: Mapping[date, str]) -> list[tuple[date, str | None, str | None]]:
    """Days on which two sources name different main contracts (or only one names any)."""
    return [(d, a.get(d), b.get(d)) for d in sorted(set(a) | set(b)) if a.get(d) != b.get(d)]
