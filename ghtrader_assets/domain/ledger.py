"""The ledger's rules: what each (variety, trading day) should hold, what QuestDB says it holds, and what to
request so the two agree. Pure: the facts come from the ledger tables (io.ledger_store), nothing here asks
Dagster or QuestDB.

Expected days are the trading days of a variety's window (from its first listed day, or the user's start)
whose data is due. Each gets one state:
- complete: its main_l5 index row names the contract, segment, schedule hash and session windows the day is
  judged by now, was built after the day closed, and its latest verification (after the row) agreed;
- unverified: the same, but no verification since the row was written;
- no_data_retrying / no_data_permanent: the provider answered empty (asked again at `next_retry`);
- missing: nothing stored (or no settled schedule row yet);
- stale: stored, but for another contract, segment or session rule, before the day closed, or a
  verification (or a row count) no longer agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum

from ghtrader_assets.domain.calendar import CalendarError, TradingCalendar, due_days, is_final
from ghtrader_assets.domain.schedule import ScheduleRow

RAW, MAIN_L5, INDEX = "underlying_ticks", "main_l5", "day_index"
ALL_ASSETS: tuple[str, ...] = (RAW, MAIN_L5, INDEX)
REBUILD_ASSETS: tuple[str, ...] = (MAIN_L5, INDEX)  # cut again from the stored raw day: no download


class DayState(str, Enum):
    COMPLETE = "complete"
    UNVERIFIED = "unverified"
    NO_DATA_RETRYING = "no_data_retrying"
    NO_DATA_PERMANENT = "no_data_permanent"
    MISSING = "missing"
    STALE = "stale"


@dataclass(frozen=True)
class DayStats:
    """What a stored (symbol, trading day) holds, counted by QuestDB: rows, first/last tick, L5 presence and
    the row-hash aggregates (sums wrap modulo 2**64, as int64)."""

    rows_total: int = 0
    first_datetime_ns: int = 0
    last_datetime_ns: int = 0
    l5_present: bool = False
    row_hash_min: int = 0
    row_hash_max: int = 0
    row_hash_sum: int = 0
    row_hash_sum_abs: int = 0
    value_sum: int | None = 0  # domain.ticks.value_checksum; None on index rows written before it existed

    @classmethod
    def of(cls, values: Mapping) -> "DayStats":
        out = {k: (bool(values[k]) if k == "l5_present" else int(values[k] or 0)) for k in STAT_FIELDS if k != "value_sum"}
        value = values.get("value_sum")
        return cls(**out, value_sum=None if value is None else int(value))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in STAT_FIELDS}

    def differences(self, other: "DayStats") -> dict[str, tuple]:
        """Fields that differ (value_sum only when both sides have it)."""
        return {k: (getattr(self, k), getattr(other, k)) for k in STAT_FIELDS if getattr(self, k) != getattr(other, k)
                and not (k == "value_sum" and None in (self.value_sum, other.value_sum))}


STAT_FIELDS = ("rows_total", "first_datetime_ns", "last_datetime_ns", "l5_present",
               "row_hash_min", "row_hash_max", "row_hash_sum", "row_hash_sum_abs", "value_sum")


@dataclass(frozen=True)
class IndexEntry:
    """One main_l5 day-index row: what was stored and what it was built for."""

    day: date
    stats: DayStats
    contract: str | None
    segment_id: int | None
    schedule_hash: int | None
    session_hash: int | None
    final: bool | None
    updated_at: datetime  # aware UTC


@dataclass(frozen=True)
class NoDataRecord:
    """An unresolved provider-empty (contract, day)."""

    contract: str
    day: date
    status: str  # retrying | permanent
    attempts: int
    next_retry: datetime | None  # aware UTC; None once permanent
    reason: str = ""


@dataclass(frozen=True)
class Verification:
    """The latest re-count of a stored day against its index row."""

    day: date
    at: datetime  # aware UTC
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class VarietyFacts:
    """Everything the ledger holds about one variety."""

    variety: str
    first_day: date | None  # the window's first trading day (None: main_schedule never ran)
    schedule: Mapping[date, ScheduleRow]
    index: Mapping[date, IndexEntry]
    no_data: Mapping[date, NoDataRecord] = field(default_factory=dict)  # raw records, by day
    verifications: Mapping[date, Verification] = field(default_factory=dict)
    schedule_refreshed_at: datetime | None = None  # the last main_schedule run (aware)
    # The session_hash each day must be cut with under today's session history (None: not judged).
    session_hash: Callable[[date], int] | None = None
    # main_l5 rows QuestDB counts now, by day (None: not counted; a day absent from it has none).
    stored_rows: Mapping[date, int] | None = None

    def expected_days(self, calendar: TradingCalendar, first: date, last: date) -> list[date]:
        """Trading days of the window within [first, last] (all of them while the window is unknown:
        main_schedule never ran)."""
        lo = max(first, self.first_day) if self.first_day is not None else first
        return calendar.between(lo, last) if lo <= last else []


@dataclass(frozen=True)
class DayStatus:
    variety: str
    day: date
    state: DayState
    reason: str = ""
    assets: tuple[str, ...] = ()  # what a fill materializes for the day (empty: nothing to do now)
    # Why a stale day is stale: schedule (contract/segment), sessions (session windows), unfinished,
    # verification, rows (the stored rows no longer match the index).
    cause: str = ""


def classify(facts: VarietyFacts, day: date, calendar: TradingCalendar, now: datetime) -> DayStatus:
    """The state of one expected day of the variety, and the assets that would bring it up to date."""

    def status(state: DayState, reason: str = "", assets: tuple[str, ...] = (), cause: str = "") -> DayStatus:
        return DayStatus(facts.variety, day, state, reason, assets, cause)

    row = facts.schedule.get(day)
    if row is None or row.provisional:
        return status(DayState.MISSING, "no settled main schedule for the day" if row is None
                      else "the day's main contract is still provisional", ALL_ASSETS)
    entry = facts.index.get(day)
    empty = facts.no_data.get(day)
    if empty is not None and empty.contract != row.main_contract:
        empty = None  # a record of a contract the day is no longer scheduled for
    if entry is None:
        return _no_data(status, empty, now) if empty else status(DayState.MISSING, "nothing stored", ALL_ASSETS)
    built = (entry.contract, entry.segment_id, entry.schedule_hash)
    if built != (row.main_contract, row.segment_id, row.schedule_hash):
        return status(DayState.STALE, f"built for {entry.contract} (segment {entry.segment_id}), scheduled "
                      f"{row.main_contract} (segment {row.segment_id})",
                      ALL_ASSETS if entry.contract != row.main_contract else REBUILD_ASSETS, "schedule")
    if entry.final is False and is_final(calendar, day, now):
        return status(DayState.STALE, "stored before the day closed", ALL_ASSETS, "unfinished")
    verified = facts.verifications.get(day)
    if verified is not None and verified.at >= entry.updated_at and not verified.ok:
        return status(DayState.STALE, f"verification: {verified.detail}", ALL_ASSETS, "verification")
    if facts.stored_rows is not None and facts.stored_rows.get(day, 0) != entry.stats.rows_total:
        return status(DayState.STALE, f"the index says {entry.stats.rows_total} rows, "
                      f"{facts.stored_rows.get(day, 0)} are stored", ALL_ASSETS, "rows")
    if entry.stats.rows_total == 0:
        return _no_data(status, empty, now) if empty else status(DayState.MISSING, "no rows and no no-data record", ALL_ASSETS)
    if facts.session_hash is not None and entry.session_hash != facts.session_hash(day):
        return status(DayState.STALE, "cut with other session windows than the session history gives now",
                      REBUILD_ASSETS, "sessions")
    if verified is not None and verified.at >= entry.updated_at:
        return status(DayState.COMPLETE)
    return status(DayState.UNVERIFIED, "no verification since it was stored")


def _no_data(status: Callable[..., DayStatus], record: NoDataRecord, now: datetime) -> DayStatus:
    if record.status == "permanent":
        return status(DayState.NO_DATA_PERMANENT, record.reason)
    due = record.next_retry is None or record.next_retry <= now
    when = "due now" if due else f"next ask {record.next_retry:%Y-%m-%d %H:%M} UTC"
    return status(DayState.NO_DATA_RETRYING, f"provider empty {record.attempts}x, {when}", ALL_ASSETS if due else ())


# -- coverage -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VarietyCoverage:
    variety: str
    first: date  # the range asked for, within the window
    last: date
    first_day: date | None  # the variety's window start
    statuses: tuple[DayStatus, ...]
    not_listed: int = 0  # trading days of the range before the window

    def count(self, state: DayState) -> int:
        return sum(1 for s in self.statuses if s.state == state)

    def days(self, *states: DayState) -> list[date]:
        return [s.day for s in self.statuses if s.state in states]

    @property
    def expected(self) -> int:
        return len(self.statuses)

    @property
    def clean(self) -> bool:
        """Nothing missing or stale (no-data days and unverified days are reported, not failures)."""
        return not self.days(DayState.MISSING, DayState.STALE)

    def summary(self) -> dict:
        return {"variety": self.variety, "first_day": self.first_day.isoformat() if self.first_day else None,
                "from": self.first.isoformat(), "to": self.last.isoformat(), "expected": self.expected,
                "not_listed": self.not_listed,
                **{state.value: self.count(state) for state in DayState},
                "missing_days": compact_ranges(self.days(DayState.MISSING), self._order),
                "stale_days": compact_ranges(self.days(DayState.STALE), self._order),
                "no_data_days": compact_ranges(self.days(DayState.NO_DATA_RETRYING, DayState.NO_DATA_PERMANENT), self._order)}

    @property
    def _order(self) -> list[date]:
        return [s.day for s in self.statuses]


def coverage(facts: VarietyFacts, calendar: TradingCalendar, first: date, last: date, now: datetime) -> VarietyCoverage:
    """Every expected day of the variety in [first, last], classified."""
    days = facts.expected_days(calendar, first, last)
    not_listed = len(calendar.between(first, last)) - len(days) if first <= last else 0
    return VarietyCoverage(facts.variety, first, last, facts.first_day,
                           tuple(classify(facts, d, calendar, now) for d in days), not_listed)


def compact_ranges(days: Sequence[date], order: Sequence[date]) -> list[str]:
    """Days as ranges of consecutive entries of `order` (the expected trading days): '2024-01-02..2024-01-05'."""
    position = {d: i for i, d in enumerate(order)}
    out: list[list[date]] = []
    for d in sorted(days, key=lambda x: position[x]):
        if out and position[d] == position[out[-1][-1]] + 1:
            out[-1].append(d)
        else:
            out.append([d])
    return [f"{r[0]}..{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in out]


# -- requests ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RangeRequest:
    """One run: `assets` of the variety over the trading days first..last (all of them need exactly these)."""

    variety: str
    first: date
    last: date
    assets: tuple[str, ...]
    days: int

    @property
    def key(self) -> str:
        return f"{self.variety}|{self.first}..{self.last}|{','.join(self.assets)}"


def fill_requests(statuses: Iterable[DayStatus], max_days: int = 0) -> list[RangeRequest]:
    """Range runs for the days that need something: consecutive statuses (in the order given, the expected
    trading days) needing the same assets form one run; a day that needs nothing splits them, so nothing
    complete is fetched again. `max_days` > 0 caps a run's length."""
    out: list[RangeRequest] = []
    current: list[DayStatus] = []

    def close() -> None:
        if current:
            out.append(RangeRequest(current[0].variety, current[0].day, current[-1].day, current[0].assets, len(current)))
            current.clear()

    for s in statuses:
        if not s.assets or (current and (s.assets != current[0].assets or s.variety != current[0].variety
                                          or (max_days and len(current) >= max_days))):
            close()
        if s.assets:
            current.append(s)
    close()
    return out


@dataclass(frozen=True)
class DailyPlan:
    """What the daily update asks for: main_schedule runs, and per-partition tick runs (variety, day, assets)."""

    schedule: tuple[str, ...]
    ticks: tuple[DayStatus, ...]
    due: tuple[date, ...]


def daily_plan(
    facts: Sequence[VarietyFacts], calendar: TradingCalendar, now: datetime, update_at: time, start: date, lookback: int
) -> DailyPlan:
    """The daily update's decision. Due days are the trading days whose update time has passed (the last
    `lookback` of them). A variety whose schedule lacks a due day, holds a provisional one, or was last
    refreshed before the latest due day's update time gets a main_schedule run, and its ticks wait for it.
    Otherwise: every due day that is not complete (missing, stale, unfinished, no-data due) and, whatever
    their age, every stale day and every no-data day whose next ask has come."""
    try:
        due = due_days(calendar, now, update_at, start, lookback)
    except CalendarError:
        return DailyPlan((), (), ())
    if not due:
        return DailyPlan((), (), ())
    latest_update = datetime.combine(due[-1], update_at, now.tzinfo)
    schedule, ticks = [], []
    for f in facts:
        window = [d for d in due if f.first_day is None or d >= f.first_day]
        if f.first_day is None or any(d not in f.schedule or f.schedule[d].provisional for d in window) or (
                f.schedule_refreshed_at is None or f.schedule_refreshed_at < latest_update):
            schedule.append(f.variety)
            continue
        recent = set(window)
        for day in f.expected_days(calendar, f.first_day, due[-1]):
            if day not in recent and day not in f.index and day not in f.no_data:
                continue  # never stored and older than the look-back: a gap for `fill`, not the daily update
            s = classify(f, day, calendar, now)
            if s.assets and (day in recent or s.state in (DayState.STALE, DayState.NO_DATA_RETRYING)):
                ticks.append(s)
    return DailyPlan(tuple(schedule), tuple(ticks), tuple(due))
