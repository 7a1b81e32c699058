"""The futures chain as plain steps (no Dagster): calendar and sessions, main schedule, and one
(variety, trading day) through raw ticks -> main_l5 -> day index. The assets coordinate these."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import polars as pl

from ghtrader_assets.domain.calendar import CST, CalendarError, TradingCalendar, current_trading_day
from ghtrader_assets.domain.schedule import (
    Revision,
    decidable_from,
    diff_schedule,
    ScheduleError,
    ScheduleRow,
    build_schedule,
    day_contracts_from_change_points,
    day_contracts_from_events,
    day_contracts_from_open_interest,
    disagreements,
    main_symbol,
    parse_variety,
    roll_days,
)
from ghtrader_assets.domain.no_data import DEFAULT_MAX_RETRIES, next_retry, permanent_reason
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.tick_cleaning import CleaningReport, clean_ticks
from ghtrader_assets.domain.ticks import with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.questdb_schema import RAW_TICKS
from ghtrader_assets.io.tqsdk_client import TqSdkClient, continuous_table, continuous_table_varieties

log = logging.getLogger(__name__)

# Exchanges whose tick data carries five depth levels; elsewhere levels 2-5 are empty.
L5_EXCHANGES = frozenset({"SHFE", "INE", "SSE", "SZSE"})
SCHEDULE_SOURCES = ("backtest", "continuous_table", "open_interest")


class ChainError(RuntimeError):
    """A step of the chain that cannot proceed; the message names the variety and day."""


# -- trading_days -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalendarResult:
    calendar: TradingCalendar
    trading_days: list[date]  # from the start date through the current (unfinished) trading day
    current_day: date
    sessions: dict[str, dict]


def refresh_calendar(
    tq: TqSdkClient, qdb: QuestDBClient, varieties: tuple[str, ...], start: date, now: datetime
) -> CalendarResult:
    """Fetch the vendor calendar (a month before `start` through the end of next month) and every
    variety's trading_time; store both. An unreachable calendar is an error, never a weekday guess."""
    for v in varieties:
        parse_variety(v)
    listed = continuous_table_varieties()
    unknown = [v for v in varieties if v not in listed]
    if unknown:
        raise ChainError(f"unknown varieties {unknown}: TqSdk's continuous table does not list them")
    local_now = now.astimezone(CST)
    end = (local_now.date().replace(day=1) + timedelta(days=62)).replace(day=1) - timedelta(days=1)
    calendar = _fetch_calendar(tq, start - timedelta(days=31), end)
    store.write_calendar(qdb, calendar)
    current = current_trading_day(calendar, now)
    days = [d for d in calendar.between(start, min(current, calendar.last)) if d <= current]
    sessions = {}
    for v in varieties:
        info = tq.quote_info(main_symbol(v))
        if not info["trading_time"]["day"]:
            raise ChainError(f"TqSdk has no trading_time for {main_symbol(v)}: is {v} a listed variety?")
        store.write_sessions(qdb, v, info["trading_time"], local_now.date(), v.split(".")[0] in L5_EXCHANGES)
        sessions[v] = info["trading_time"]
    return CalendarResult(calendar, days, current, sessions)


def _fetch_calendar(tq: TqSdkClient, start: date, end: date) -> TradingCalendar:
    try:
        return tq.trading_calendar(start, end)
    except Exception as exc:
        # The holiday file covers whole years; shrink the end to the last day it can answer for, once.
        if "交易日历可以处理的范围" in str(exc) or "range" in str(exc):
            return tq.trading_calendar(start, date(end.year - 1, 12, 31))
        raise



# -- main_schedule --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleResult:
    variety: str
    rows: list[ScheduleRow]
    new_days: int
    source: str
    disagreements: list[tuple[date, str | None, str | None]] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)  # applied: settled days now assigned differently
    pending: list[Revision] = field(default_factory=list)  # not applied: older than the confirmation age
    changed_days: list[date] = field(default_factory=list)  # stored days whose contract/segment changed
    provisional_days: list[date] = field(default_factory=list)


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


def refresh_schedule(
    tq: TqSdkClient,
    qdb: QuestDBClient,
    variety: str,
    calendar: TradingCalendar,
    days: list[date],
    source: str = "backtest",
    rebuild: bool = False,
    rules: ScheduleRules | None = None,
) -> ScheduleResult:
    """Extend the variety's schedule over `days` and re-ask the source for every provisional day and the
    last `recheck_days` settled ones (all of them for the cheap continuous table, or with `rebuild`).
    A day is provisional while the source cannot answer for it yet: before the vendor publishes it
    (`published_at` on the previous trading day) or before it opens (a backtest sees the switch only at
    the day's first update); a settled day the source now assigns differently is a revision: applied and
    reported, or, for days older than `confirm_older_than` trading days, reported as pending confirmation."""
    rules = rules or ScheduleRules()
    parse_variety(variety)
    if source not in SCHEDULE_SOURCES:
        raise ChainError(f"unknown schedule source {source!r}; choose one of {SCHEDULE_SOURCES}")
    if not days:
        raise ChainError(f"no trading days to schedule for {variety}: materialize trading_days first")
    wanted = set(days)
    stored = {r.trading_day: r for r in store.read_schedule(qdb, variety) if r.trading_day in wanted}
    settled_prefix: list[date] = []
    for d in days:
        if d not in stored or stored[d].provisional:
            break
        settled_prefix.append(d)
    recheck = len(settled_prefix) if (rebuild or source == "continuous_table") else rules.recheck_days
    keep = settled_prefix[: max(len(settled_prefix) - recheck, 0)]
    ask = days[len(keep):]
    base = {d: stored[d].main_contract for d in keep}
    mapping = dict(base)
    if ask:
        mapping.update(_source_mapping(tq, variety, calendar, ask, source, base))
    provisional = [d for d in days if not _decidable(calendar, d, rules)]
    rows = build_schedule(variety, mapping, provisional)
    to_write, revisions = diff_schedule(stored, rows)
    pending: list[Revision] = []
    if rules.confirm_older_than and not rules.confirmed and revisions and rules.now is not None:
        recent = calendar.between(calendar.first, current_trading_day(calendar, rules.now))[-rules.confirm_older_than:]
        pending = [r for r in revisions if r.trading_day < recent[0]]
        if pending:
            for r in pending:
                mapping[r.trading_day] = r.old.main_contract
            rows = build_schedule(variety, mapping, provisional)
            to_write, revisions = diff_schedule(stored, rows)
            pending = [p for p in pending if p.trading_day not in {r.trading_day for r in revisions}]
    for r in revisions:
        log.warning("%s: the source revised %s", variety, r.describe())
    if to_write:
        store.write_schedule(qdb, variety, to_write, source)
    changed = [r.trading_day for r in to_write if r.trading_day in stored and not r.same_assignment(stored[r.trading_day])]
    new_days = sum(1 for d in days if d not in stored)
    return ScheduleResult(variety, rows, new_days, source, revisions=revisions, pending=pending,
                          changed_days=changed, provisional_days=provisional)


def _decidable(calendar: TradingCalendar, day: date, rules: ScheduleRules) -> bool:
    if rules.now is None:
        return True
    try:
        previous = calendar.previous_trading_day(day)
    except CalendarError:
        return True
    if rules.night_open is not None and calendar.has_night_session(day):
        opens = datetime.combine(previous, rules.night_open, CST)
    else:
        opens = datetime.combine(day, rules.day_open, CST)
    return rules.now >= max(opens, decidable_from(previous, rules.published_at))


def _source_mapping(
    tq: TqSdkClient, variety: str, calendar: TradingCalendar, todo: list[date], source: str, existing: dict[date, str]
) -> dict[date, str]:
    if source == "continuous_table":
        return day_contracts_from_change_points(todo, continuous_table(variety))
    if source == "open_interest":
        table = continuous_table(variety)  # the contracts ever main; their daily open interest decides
        contracts = sorted({c for _, c in table})
        oi: dict[date, dict[str, float]] = {}
        for contract in contracts:
            for d, value in tq.daily_open_interest(contract, todo[0], todo[-1]).items():
                oi.setdefault(d, {})[contract] = value
        return day_contracts_from_open_interest(todo, oi)
    # The backtest starts on the last scheduled day when there is one, so its initial contract is known.
    start = max(existing) if existing else todo[0]
    events = tq.main_events(variety, start, todo[-1])
    changes = [(calendar.trading_day_of(ns), contract) for ns, contract in events.changes]
    if existing and events.initial != existing[start]:
        log.warning("%s: backtest starts on %s with %s but the stored schedule says %s",
                    variety, start, events.initial, existing[start])
    return day_contracts_from_events(todo, events.initial, changes)


def compare_with_continuous_table(variety: str, rows: list[ScheduleRow]) -> list[tuple[date, str | None, str | None]]:
    """Days on which the stored schedule and the vendor's continuous table disagree."""
    days = [r.trading_day for r in rows]
    try:
        table = day_contracts_from_change_points(days, continuous_table(variety))
    except ScheduleError as exc:
        raise ChainError(f"{variety}: the continuous table does not cover the schedule: {exc}") from exc
    return disagreements({r.trading_day: r.main_contract for r in rows}, table)


# -- one (variety, trading day) ---------------------------------------------------------------------------
@dataclass
class DayResult:
    variety: str
    day: date
    contract: str
    segment_id: int
    final: bool
    raw: dict | None = None
    main_l5: dict | None = None
    index: dict | None = None
    cleaning: CleaningReport | None = None
    no_data: bool = False
    no_data_status: str = ""  # retrying (provider empty, asked again at next_retry) | permanent
    no_data_attempts: int = 0
    next_retry: datetime | None = None


def fetch_underlying_day(
    tq: TqSdkClient,
    qdb: QuestDBClient,
    calendar: TradingCalendar,
    sessions: Sessions | SessionHistory,
    row: ScheduleRow,
    variety: str,
    day: date,
    result: DayResult,
    open_no_data: set[tuple[str, date]],
    now: datetime | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> None:
    """Download the scheduled contract's ticks of `day` (start = end = day) and store exactly them.
    `open_no_data` holds the unresolved no-data records (see store.open_no_data_days); kept up to date.
    An empty answer is recorded with its attempt count and the time to ask again (see domain.no_data)."""
    contract = row.main_contract
    bounds = calendar.bounds_ns(day)
    frame, report = clean_ticks(tq.ticks(contract, day), calendar, sessions, day)
    result.cleaning = report
    if report.changed:
        log.warning("%s %s: cleaning rule changed the provider frame: %s", contract, day, report.as_metadata())
    if frame.height == 0:
        reason = "provider returned no ticks" if result.final else "provider returned no ticks (day unfinished)"
        attempts = (store.no_data_attempts(qdb, contract, day, "raw") if (contract, day) in open_no_data else 0) + 1
        asked_at = now or datetime.now(CST)
        retry_at = next_retry(asked_at, attempts, max_retries)
        status = "retrying" if retry_at else "permanent"
        if retry_at is None:
            reason = permanent_reason(attempts, reason)
        store.write_no_data(qdb, contract, day, "raw", reason, resolved=False, attempts=attempts,
                            next_retry=retry_at, status=status)
        open_no_data.add((contract, day))
        result.no_data = True
        result.no_data_status, result.no_data_attempts, result.next_retry = status, attempts, retry_at
        result.raw = {"rows_total": 0}
        return
    frame = with_seq(with_row_hash(frame)).with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
        pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"),
    )
    store.replace_raw_day(qdb, contract, day, bounds, frame.select(store.RAW_FRAME_COLUMNS))
    if (contract, day) in open_no_data:
        store.write_no_data(qdb, contract, day, "raw", "data arrived on a later run", resolved=True)
        open_no_data.discard((contract, day))
    result.raw = store.frame_stats(frame)


def build_main_l5_day(qdb: QuestDBClient, calendar: TradingCalendar, row: ScheduleRow, variety: str, day: date, result: DayResult) -> None:
    rows = store.materialize_main_l5(qdb, variety, day, calendar.bounds_ns(day), row)
    result.main_l5 = {"rows_total": rows}


def index_day(qdb: QuestDBClient, calendar: TradingCalendar, row: ScheduleRow, variety: str, day: date, result: DayResult,
              open_no_data: set[tuple[str, date]] | None = None) -> None:
    """Index what is stored (raw contract and main series) and check the two agree: main_l5 is a copy
    of the scheduled contract's day, so rows and row-hash aggregates must equal those of the raw ticks
    (as just fetched, when this run fetched them)."""
    bounds = calendar.bounds_ns(day)
    raw = result.raw if result.raw and "row_hash_sum" in result.raw else store.day_stats(qdb, RAW_TICKS, row.main_contract, day, bounds)
    qdb.wait_for_wal(store.MAIN_L5_TICKS)
    main = store.day_stats(qdb, store.MAIN_L5_TICKS, main_symbol(variety), day, bounds)
    store.write_index(qdb, row.main_contract, day, "raw", raw, None)
    store.write_index(qdb, main_symbol(variety), day, "main_l5", main, row.main_contract)
    symbol = main_symbol(variety)
    if main["rows_total"] == 0:
        # Follows the raw record: retried (and resolved) with the raw day.
        store.write_no_data(qdb, symbol, day, "main_l5", f"no raw ticks for {row.main_contract}", resolved=False,
                            attempts=max(result.no_data_attempts, 1), next_retry=result.next_retry,
                            status=result.no_data_status or "retrying")
        if open_no_data is not None:
            open_no_data.add((symbol, day))
    elif open_no_data is not None and (symbol, day) in open_no_data:
        store.write_no_data(qdb, symbol, day, "main_l5", "data arrived on a later run", resolved=True)
        open_no_data.discard((symbol, day))
    result.index = main
    mismatch = {k: (raw[k], main[k]) for k in raw if raw[k] != main[k]}
    if mismatch:
        raise ChainError(f"{main_symbol(variety)} {day}: main_l5 differs from {row.main_contract} raw ticks: {mismatch}")


def verify_index(qdb: QuestDBClient, symbol: str, kind: str, stored: dict[date, dict]) -> list[str]:
    """Compare the day index rows of `symbol` with stats computed from the stored ticks (`stored`, by
    trading day); return the differences, one line each. One query for the whole range."""
    qdb.wait_for_wal(store.SYMBOL_DAY_INDEX)
    if not stored:
        return []
    index = store.read_index(qdb, symbol, min(stored), max(stored), kind)
    entries = {ts.date(): row for ts, row in zip(index["ts"], index.iter_rows(named=True))} if index.height else {}
    problems = []
    for day, stats in sorted(stored.items()):
        entry = entries.get(day)
        if entry is None:
            problems.append(f"{symbol} {day} {kind}: no index row")
            continue
        problems += [f"{symbol} {day} {kind}: {k} index={entry[k]} stored={v}" for k, v in stats.items() if entry[k] != v]
    return problems


def is_final(calendar: TradingCalendar, day: date, now: datetime) -> bool:
    """A trading day is final once the next one has begun (18:00 Beijing on the day)."""
    return day < current_trading_day(calendar, now)
