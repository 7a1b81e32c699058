"""The futures chain as plain steps (no Dagster): calendar and sessions, main schedule, and one
(variety, trading day) through raw ticks -> main_l5 -> day index. The assets coordinate these."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import polars as pl

from ghtrader_assets.domain.calendar import CST, CalendarError, TradingCalendar, current_trading_day, is_final
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
)
from ghtrader_assets.domain.no_data import DEFAULT_MAX_RETRIES, next_retry, permanent_reason
from ghtrader_assets.domain.session_history import KNOWN_CHANGES, KNOWN_NIGHT_EXCEPTIONS, SessionHistory, load_session_file
from ghtrader_assets.domain.symbols import expected_depth, has_l5_depth
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.tick_cleaning import CleaningReport, flag_ticks, keep_rule
from ghtrader_assets.domain.ticks import served_depth, with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient
from ghtrader_assets.io.tqsdk_client import TqSdkClient, continuous_table, continuous_table_varieties

log = logging.getLogger(__name__)

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
        store.write_sessions(qdb, v, info["trading_time"], local_now.date(), has_l5_depth(v))
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



# -- sessions ------------------------------------------------------------------------------------------
def session_opens(qdb: QuestDBClient, variety: str) -> tuple[time | None, time]:
    """The variety's night open (None without night session) and day open, from its latest capture."""
    captures = store.read_session_captures(qdb, variety)
    if not captures:
        return time(21, 0), time(9, 0)
    sessions = Sessions.parse(captures[-1][1])
    night = time.fromisoformat(sessions.night[0].label()[:8]) if sessions.night else None
    return night, time.fromisoformat(sessions.day[0].label()[:8])


def session_history(qdb: QuestDBClient, variety: str, extra_file: str) -> SessionHistory:
    """Every captured trading_time of the variety, the known past changes and the user's file."""
    captures = store.read_session_captures(qdb, variety)
    if not captures:
        raise ChainError(f"no session metadata for {variety}: materialize trading_days first")
    changes, exceptions = list(KNOWN_CHANGES), list(KNOWN_NIGHT_EXCEPTIONS)
    if extra_file:
        more_changes, more_exceptions = load_session_file(extra_file)
        changes += more_changes
        exceptions += more_exceptions
    return SessionHistory.build(variety, captures, changes, exceptions)


# -- main_schedule --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleResult:
    variety: str
    rows: list[ScheduleRow]
    new_days: int
    source: str
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


# -- a range of (variety, trading day)s, pipelined -----------------------------------------------------------
@dataclass(frozen=True)
class ChainSteps:
    """Which of the per-day assets a run materializes."""

    raw: bool = True  # underlying_ticks: download and store the scheduled contract's day
    main_l5: bool = True  # copy it into the continuous series inside QuestDB
    index: bool = True  # write and check the day index


@dataclass(frozen=True)
class NoData:
    """A provider-empty day: asked again at `next_retry` (status retrying) or given up (permanent)."""

    status: str
    attempts: int
    next_retry: datetime | None


@dataclass(frozen=True)
class DayOutcome:
    """What the chain did for one (variety, trading day). Stats are dicts of the day index columns
    (rows_total, first/last_datetime_ns, l5_present, row_hash_*), counted by QuestDB from the stored rows."""

    variety: str
    day: date
    contract: str = ""
    segment_id: int = -1
    final: bool = False
    raw: dict | None = None
    main_l5: dict | None = None
    index: dict | None = None
    cleaning: CleaningReport | None = None
    no_data: NoData | None = None
    error: str = ""  # set when the day failed; the others of the range go on
    depth: int | None = None  # depth levels the provider served this run (None: not downloaded, or no ticks)

    @property
    def depth_mismatch(self) -> bool:
        """Served with another depth than the variety's exchange publishes (see domain.symbols)."""
        return self.depth is not None and self.depth != expected_depth(self.variety)

    @property
    def rows(self) -> int | None:
        stats = self.index or self.main_l5 or self.raw
        return None if stats is None else int(stats["rows_total"])


@dataclass(frozen=True)
class PipelineLimits:
    prefetch_days: int = 4  # downloaded days waiting to be stored, at most (memory stays flat)
    batch_days: int = 8  # days stored together: one write and one WAL barrier per table per batch


def run_days(
    tq_session: Callable[[], TqSdkClient],
    qdb: QuestDBClient,
    calendar: TradingCalendar,
    days: Sequence[tuple[str, date]],
    steps: ChainSteps,
    sessions: Callable[[str], Sessions | SessionHistory],
    now: datetime | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    limits: PipelineLimits = PipelineLimits(),
) -> Iterator[DayOutcome]:
    """Yield one outcome per (variety, day), in order. With `steps.raw`, one thread of its own opens the
    TqSdk session (`tq_session()`) and downloads the scheduled contracts' days ahead of the store, at most
    `limits.prefetch_days` ahead; the calling thread cleans and stores whatever has arrived as one batch.
    A day that fails yields an outcome with `error`; a QuestDB failure fails the days of its batch."""
    now_ = now or datetime.now(CST)
    schedules: dict[str, dict[date, ScheduleRow]] = {}
    planned: list[tuple[str, date, ScheduleRow | None]] = []
    for variety, day in days:
        if variety not in schedules:
            schedules[variety] = {r.trading_day: r for r in store.read_schedule(qdb, variety)}
        planned.append((variety, day, schedules[variety].get(day)))
    open_no_data = store.open_no_data_days(qdb)
    downloads = [(row.main_contract, day) for _, day, row in planned if row is not None] if steps.raw else []
    fetcher = _Downloader(tq_session, downloads, limits.prefetch_days) if downloads else None
    try:
        i = 0
        while i < len(planned):
            batch: list[tuple[str, date, ScheduleRow, pl.DataFrame | None | BaseException]] = []
            while i < len(planned) and len(batch) < limits.batch_days:
                variety, day, row = planned[i]
                if row is None:
                    if batch:
                        break  # keep order: the batch before it is stored first
                    i += 1
                    yield DayOutcome(variety, day, error=f"ChainError: no main schedule for {variety} on {day}: "
                                                         "materialize main_schedule for it first")
                    continue
                answer = None
                if fetcher is not None:
                    answer = fetcher.next(block=not batch)
                    if answer is _NOT_YET:
                        break
                batch.append((variety, day, row, answer))
                i += 1
            if batch:
                yield from _store_batch(qdb, calendar, batch, steps, sessions, open_no_data, now_, max_retries)
    finally:
        if fetcher is not None:
            fetcher.stop()


_NOT_YET = object()
_END = object()


class _Downloader:
    """Downloads (contract, day)s in order on one TqSdk session, in one thread of its own (TqApi is not
    thread-safe): the session is opened, used and closed there. Answers wait in a bounded queue."""

    # The client empties what a TqApi session keeps of each download (its ticks and DIFF packs: about 100 MB
    # per real-density day otherwise); what is left still grows a few MB per day, so a fresh session after
    # 20 days or 1,000,000 ticks (about 18 days of one real contract), one login each.
    SESSION_DAYS = 20
    SESSION_TICKS = 1_000_000

    def __init__(self, tq_session: Callable[[], TqSdkClient], jobs: list[tuple[str, date]], ahead: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(tq_session, jobs), name="tqsdk-download", daemon=True)
        self._thread.start()

    def _run(self, tq_session: Callable[[], TqSdkClient], jobs: list[tuple[str, date]]) -> None:
        tq = tq_session()
        days = ticks = 0  # received on the current session
        try:
            for contract, day in jobs:
                if self._stopping.is_set():
                    return
                if days >= self.SESSION_DAYS or ticks >= self.SESSION_TICKS:
                    tq.close()  # TqApi's memory grows with every tick it received; the next call logs in afresh
                    days = ticks = 0
                try:
                    answer: pl.DataFrame | BaseException = tq.ticks(contract, day)
                    ticks += answer.height
                except Exception as exc:  # noqa: BLE001 - reported as that day's outcome
                    answer = exc
                days += 1
                if not self._put(answer):
                    return
        finally:
            tq.close()  # in this thread, where the session was used
            self._put(_END)

    def _put(self, item: object) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def next(self, block: bool) -> object:
        """The next day's answer (a frame or the exception it raised); _NOT_YET if not downloaded yet."""
        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return _NOT_YET
        if item is _END:
            raise ChainError("the download thread ended early")
        return item

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)


def _store_batch(qdb, calendar, batch, steps: ChainSteps, sessions, open_no_data, now: datetime, max_retries: int):
    writes: list[store.DayWrite] = []
    partial: dict[tuple[str, date], dict] = {}
    for variety, day, row, answer in batch:
        key = (variety, day)
        base = {"contract": row.main_contract, "segment_id": row.segment_id, "final": is_final(calendar, day, now)}
        frame = None
        if isinstance(answer, BaseException):
            partial[key] = {**base, "error": f"{type(answer).__name__}: {answer}"}
            continue
        try:
            rule = keep_rule(calendar, sessions(variety), day)
            if isinstance(answer, pl.DataFrame):
                frame, report = flag_ticks(answer, rule)
                base["cleaning"] = report
                if frame.height:
                    base["depth"] = served_depth(answer)
        except Exception as exc:  # noqa: BLE001 - e.g. a session history that cannot judge the day
            partial[key] = {**base, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if frame is not None:
            if report.changed:
                log.warning("%s %s: main_l5 leaves out or reorders ticks of the provider's answer (raw keeps "
                            "them, flagged): %s", row.main_contract, day, report.as_metadata())
            if frame.height:
                frame = with_seq(with_row_hash(frame)).with_columns(
                    pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
                    pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"),
                ).select(*store.RAW_FRAME_COLUMNS, "flag")
        partial[key] = base
        writes.append(store.DayWrite(variety, day, calendar.bounds_ns(day), row, frame, rule))
    try:
        stored = store.store_days(qdb, writes, main_l5=steps.main_l5) if writes else {}
        if steps.index and not steps.main_l5:
            for variety in {w.variety for w in writes}:
                mine = {w.day: w.bounds for w in writes if w.variety == variety}
                for day, stats in store.stats_by_day(qdb, "main_l5", main_symbol(variety), mine).items():
                    before = stored[(variety, day)]
                    stored[(variety, day)] = store.DayStored(before.raw, stats, before.error, before.raw_kept)
        outcomes = {w_key: _day_outcome(qdb, w, partial[w_key], stored[w_key], steps, open_no_data, now, max_retries)
                    for w in writes for w_key in [(w.variety, w.day)]}
        if steps.index:
            store.write_index_days(qdb, [(w, outcomes[(w.variety, w.day)].raw, outcomes[(w.variety, w.day)].index)
                                         for w in writes if not outcomes[(w.variety, w.day)].error])
    except Exception as exc:  # noqa: BLE001 - e.g. QuestDB went away: every day of this batch failed
        error = f"{type(exc).__name__}: {exc}"
        outcomes = {(w.variety, w.day): DayOutcome(w.variety, w.day, **{**partial[(w.variety, w.day)], "error": error})
                    for w in writes}
    for variety, day, _, _ in batch:
        key = (variety, day)
        yield outcomes[key] if key in outcomes else DayOutcome(variety, day, **partial[key])


def _day_outcome(qdb, w: store.DayWrite, base: dict, stored: store.DayStored, steps: ChainSteps,
                 open_no_data: set, now: datetime, max_retries: int) -> DayOutcome:
    contract, day, symbol = w.row.main_contract, w.day, main_symbol(w.variety)
    fetched = w.frame is not None and w.frame.height > 0
    no_data = None
    if steps.raw and not fetched:
        no_data = _record_no_data(qdb, contract, day, base["final"], open_no_data, now, max_retries)
    elif fetched and (contract, day) in open_no_data:
        store.write_no_data(qdb, contract, day, "raw", "data arrived on a later run", resolved=True)
        open_no_data.discard((contract, day))
    if stored.error:
        return DayOutcome(w.variety, day, **base, raw=stored.raw, no_data=no_data, error=f"QuestDBError: {stored.error}")
    if fetched and stored.raw != store.frame_stats(w.frame):
        return DayOutcome(w.variety, day, **base, raw=stored.raw, error=(
            f"QuestDBError: {contract} {day}: the stored raw day differs from the provider's answer "
            f"(stored {stored.raw['rows_total']} rows, answer {w.frame.height})"))
    raw = stored.raw if (steps.raw or steps.index) else None
    index = None
    if steps.index:
        main = stored.main_l5
        index = main
        if main["rows_total"] == 0:
            # Follows the raw record: retried (and resolved) with the raw day.
            store.write_no_data(qdb, symbol, day, "main_l5", f"no raw ticks for {contract}", resolved=False,
                                attempts=no_data.attempts if no_data else 1, next_retry=no_data.next_retry if no_data else None,
                                status=no_data.status if no_data else "retrying")
            open_no_data.add((symbol, day))
        elif (symbol, day) in open_no_data:
            store.write_no_data(qdb, symbol, day, "main_l5", "data arrived on a later run", resolved=True)
            open_no_data.discard((symbol, day))
        kept = stored.raw_kept or stored.raw
        mismatch = {k: (kept[k], main[k]) for k in kept if kept[k] != main[k]}
        if mismatch:
            return DayOutcome(w.variety, day, **base, raw=raw, main_l5=main, no_data=no_data, error=(
                f"ChainError: {symbol} {day}: main_l5 differs from the kept raw ticks of {contract}: {mismatch}"))
    return DayOutcome(w.variety, day, **base, raw=raw, main_l5=stored.main_l5 if steps.main_l5 else None,
                      index=index, no_data=no_data)


def _record_no_data(qdb, contract: str, day: date, final: bool, open_no_data: set, now: datetime, max_retries: int) -> NoData:
    """An empty answer: recorded with its attempt count and the time to ask again (see domain.no_data)."""
    reason = "provider returned no ticks" if final else "provider returned no ticks (day unfinished)"
    attempts = (store.no_data_attempts(qdb, contract, day, "raw") if (contract, day) in open_no_data else 0) + 1
    retry_at = next_retry(now, attempts, max_retries)
    status = "retrying" if retry_at else "permanent"
    if retry_at is None:
        reason = permanent_reason(attempts, reason)
    store.write_no_data(qdb, contract, day, "raw", reason, resolved=False, attempts=attempts, next_retry=retry_at, status=status)
    open_no_data.add((contract, day))
    return NoData(status, attempts, retry_at)


def verify_index(qdb: QuestDBClient, calendar: TradingCalendar, symbol: str, kind: str, days: Sequence[date]) -> list[str]:
    """Compare the day index rows of `symbol` over `days` with what QuestDB counts in the stored ticks
    (rows, first/last tick, L5 presence, row-hash aggregates); return the differences, one line each.
    Two queries for the whole range: the index rows and the stats of the stored rows."""
    if not days:
        return []
    stored = store.stats_by_day(qdb, kind, symbol, {d: calendar.bounds_ns(d) for d in days})
    index = store.read_index(qdb, symbol, min(days), max(days), kind)
    entries = {ts.date(): row for ts, row in zip(index["ts"], index.iter_rows(named=True))} if index.height else {}
    problems = []
    for day, stats in sorted(stored.items()):
        entry = entries.get(day)
        if entry is None:
            problems.append(f"{symbol} {day} {kind}: no index row")
            continue
        problems += [f"{symbol} {day} {kind}: {k} index={entry[k]} stored={v}" for k, v in stats.items() if entry[k] != v]
    return problems
