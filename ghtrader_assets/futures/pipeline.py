"""A range of (variety, trading day)s through raw ticks -> main_l5 -> day index, pipelined: the download runs
ahead of the store in a process of its own, the store writes batches of days. One outcome per day."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from ghtrader_assets.domain.calendar import CST, TradingCalendar, is_final
from ghtrader_assets.domain.ledger import DayStats
from ghtrader_assets.domain.no_data import DEFAULT_MAX_RETRIES, next_retry, permanent_reason
from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.session_history import SessionHistory
from ghtrader_assets.domain.symbols import expected_depth, main_symbol
from ghtrader_assets.domain.tick_cleaning import CleaningReport, flag_ticks, keep_rule
from ghtrader_assets.domain.ticks import served_depth, with_row_hash, with_seq
from ghtrader_assets.futures.download import DownloadFailed, DownloadProcess, TickSource
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainSteps:
    """Which of the per-day assets a run materializes (named as the assets are)."""

    underlying_ticks: bool = True  # download and store the scheduled contract's day (raw)
    main_l5: bool = True  # cut the curated series from it inside QuestDB
    day_index: bool = True  # write and check the day index


@dataclass(frozen=True)
class NoData:
    """A provider-empty day: asked again at `next_retry` (status retrying) or given up (permanent)."""

    status: str
    attempts: int
    next_retry: datetime | None


@dataclass(frozen=True)
class DayOutcome:
    """What the chain did for one (variety, trading day); every stat is counted by QuestDB from the stored rows."""

    variety: str
    day: date
    contract: str = ""
    segment_id: int = -1
    final: bool = False
    raw: DayStats | None = None
    main_l5: DayStats | None = None
    index: DayStats | None = None
    cleaning: CleaningReport | None = None
    no_data: NoData | None = None
    error: str = ""  # set when the day failed; the others of the range go on
    depth: int | None = None  # depth levels the provider served this run (None: not downloaded, or no ticks)
    listed: bool = True  # False: the day lies before the variety's window (nothing to fetch or store)

    @property
    def depth_mismatch(self) -> bool:
        """Served with another depth than the variety's exchange publishes (see domain.symbols)."""
        return self.depth is not None and self.depth != expected_depth(self.variety)

    @property
    def rows(self) -> int | None:
        stats = self.index or self.main_l5 or self.raw
        return None if stats is None else stats.rows_total


@dataclass(frozen=True)
class PipelineLimits:
    prefetch_days: int = 4  # downloaded days waiting to be stored, at most (memory stays flat)
    batch_days: int = 8  # days stored together: one write and one WAL barrier per table per batch
    # After the first day (stored at once: the first partition shows up at once), the store waits up to
    # min_batch_wait_s for this many days before it writes: QuestDB's work per batch (WAL commits, barriers,
    # grouped queries) otherwise takes CPU from the download on a small machine.
    min_batch_days: int = 4
    min_batch_wait_s: float = 5.0
    # A TqSdk login keeps some of what it received (see io.tqsdk_client._forget_received_ticks): the download
    # logs in afresh after this many days or ticks (about 18 days of one real-density contract).
    login_days: int = 20
    login_ticks: int = 1_000_000


def run_days(
    new_client: Callable[[], TickSource],
    qdb: QuestDBClient,
    calendar: TradingCalendar,
    days: Sequence[tuple[str, date]],
    steps: ChainSteps,
    histories: Mapping[str, SessionHistory],
    now: datetime | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    limits: PipelineLimits = PipelineLimits(),
) -> Iterator[DayOutcome]:
    """Yield one outcome per (variety, day), in order. With `steps.underlying_ticks`, a process of its own
    (futures.download) logs in to TqSdk (`new_client()`, picklable: it is called in that process) and
    downloads the scheduled contracts' days ahead of the store, at most `limits.prefetch_days` ahead; this
    process flags and stores the days that have arrived as one batch (waiting up to `min_batch_wait_s` for
    `min_batch_days`). Each day is judged by its variety's session history (`histories`). A day before the
    variety's window is `listed=False`; a day that fails yields an outcome with `error`; a QuestDB failure
    fails the days of its batch."""
    now_ = now or datetime.now(CST)
    windows = ledger.read_windows(qdb)
    schedules: dict[str, dict[date, ScheduleRow]] = {}
    planned: list[tuple[str, date, ScheduleRow | None]] = []
    for variety, day in days:
        if variety not in schedules:
            schedules[variety] = {r.trading_day: r for r in ledger.read_schedule(qdb, variety)}
        window = windows.get(variety)
        listed = window is None or day >= window.first_day  # rows of an older, wider window do not count
        planned.append((variety, day, schedules[variety].get(day) if listed else None))
    open_no_data = ledger.open_no_data_days(qdb)
    downloads = [(row.main_contract, day) for _, day, row in planned if row is not None] if steps.underlying_ticks else []
    fetcher = DownloadProcess(new_client, downloads, limits.prefetch_days, limits.login_days, limits.login_ticks) \
        if downloads else None
    stored_any = False
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
                    window = windows.get(variety)
                    if window is not None and day < window.first_day:
                        yield DayOutcome(variety, day, listed=False, final=is_final(calendar, day, now_))
                    else:
                        yield DayOutcome(variety, day, error=f"ChainError: no main schedule for {variety} on {day}: "
                                                             "materialize main_schedule for it first")
                    continue
                answer = None
                if fetcher is not None:
                    if not batch:
                        answer = fetcher.next(block=True)
                        wait_until = time.monotonic() + limits.min_batch_wait_s
                    else:  # the first day is stored at once; later batches wait a little for min_batch_days
                        fill = stored_any and len(batch) < limits.min_batch_days
                        answer = fetcher.next(block=False, wait_s=max(0.0, wait_until - time.monotonic()) if fill else 0.0)
                    if answer is None:  # not downloaded yet: store what has arrived first
                        break
                batch.append((variety, day, row, answer))
                i += 1
            if batch:
                yield from _store_batch(qdb, calendar, batch, steps, histories, open_no_data, now_, max_retries)
                stored_any = True
    finally:
        if fetcher is not None:
            fetcher.stop()


def _store_batch(qdb, calendar, batch, steps: ChainSteps, histories, open_no_data, now: datetime, max_retries: int):
    writes: list[store.DayWrite] = []
    partial: dict[tuple[str, date], dict] = {}
    for variety, day, row, answer in batch:
        key = (variety, day)
        base = {"contract": row.main_contract, "segment_id": row.segment_id, "final": is_final(calendar, day, now)}
        frame = None
        if isinstance(answer, DownloadFailed):  # its message names the error as the download process saw it
            partial[key] = {**base, "error": str(answer)}
            continue
        try:
            rule = keep_rule(calendar, histories[variety], day)
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
        if steps.day_index and not steps.main_l5:
            for variety in {w.variety for w in writes}:
                mine = {w.day: w.bounds for w in writes if w.variety == variety}
                for day, stats in store.stats_by_day(qdb, "main_l5", main_symbol(variety), mine).items():
                    before = stored[(variety, day)]
                    stored[(variety, day)] = store.DayStored(before.raw, before.raw_kept, stats, before.error)
        no_data: list[ledger.NoDataWrite] = []
        outcomes = {(w.variety, w.day): _day_outcome(qdb, w, partial[(w.variety, w.day)], stored[(w.variety, w.day)],
                                                      steps, open_no_data, now, max_retries, no_data) for w in writes}
        ledger.write_no_data(qdb, no_data)
        if steps.day_index:
            ledger.write_index(qdb, [row for w in writes if not outcomes[(w.variety, w.day)].error
                                     for row in _index_rows(w, outcomes[(w.variety, w.day)])])
    except Exception as exc:  # noqa: BLE001 - e.g. QuestDB went away: every day of this batch failed
        error = f"{type(exc).__name__}: {exc}"
        outcomes = {(w.variety, w.day): DayOutcome(w.variety, w.day, **{**partial[(w.variety, w.day)], "error": error})
                    for w in writes}
    for variety, day, _, _ in batch:
        key = (variety, day)
        yield outcomes[key] if key in outcomes else DayOutcome(variety, day, **partial[key])


def _index_rows(w: store.DayWrite, outcome: DayOutcome) -> list[ledger.IndexWrite]:
    """The ledger rows of a stored day: the raw contract's and the main series' (with what it was built for)."""
    return [
        ledger.IndexWrite(w.row.main_contract, w.day, "raw", outcome.raw or DayStats(), final=outcome.final),
        ledger.IndexWrite(main_symbol(w.variety), w.day, "main_l5", outcome.index or DayStats(), w.row.main_contract,
                          w.row.segment_id, w.row.schedule_hash, w.session_hash, outcome.final),
    ]


def _day_outcome(qdb, w: store.DayWrite, base: dict, stored: store.DayStored, steps: ChainSteps,
                 open_no_data: set, now: datetime, max_retries: int, no_data_writes: list) -> DayOutcome:
    contract, day, symbol = w.row.main_contract, w.day, main_symbol(w.variety)
    fetched = w.frame is not None and w.frame.height > 0
    no_data = None
    if steps.underlying_ticks and not fetched:
        no_data = _record_no_data(qdb, contract, day, base["final"], open_no_data, now, max_retries, no_data_writes)
    elif fetched and (contract, day) in open_no_data:
        no_data_writes.append(ledger.NoDataWrite(contract, day, "raw", "data arrived on a later run", resolved=True))
        open_no_data.discard((contract, day))
    if stored.error:
        return DayOutcome(w.variety, day, **base, raw=stored.raw, no_data=no_data, error=f"QuestDBError: {stored.error}")
    if fetched and stored.raw != store.frame_stats(w.frame):
        return DayOutcome(w.variety, day, **base, raw=stored.raw, error=(
            f"QuestDBError: {contract} {day}: the stored raw day differs from the provider's answer "
            f"(stored {stored.raw.rows_total} rows, answer {w.frame.height})"))
    raw = stored.raw if (steps.underlying_ticks or steps.day_index) else None
    index = None
    if steps.day_index:
        main = stored.main_l5 or DayStats()
        index = main
        if main.rows_total == 0:
            # Follows the raw record: retried (and resolved) with the raw day.
            no_data_writes.append(ledger.NoDataWrite(
                symbol, day, "main_l5", f"no raw ticks for {contract}", resolved=False,
                attempts=no_data.attempts if no_data else 1, next_retry=no_data.next_retry if no_data else None,
                status=no_data.status if no_data else "retrying"))
            open_no_data.add((symbol, day))
        elif (symbol, day) in open_no_data:
            no_data_writes.append(ledger.NoDataWrite(symbol, day, "main_l5", "data arrived on a later run", resolved=True))
            open_no_data.discard((symbol, day))
        mismatch = stored.raw_kept.differences(main)
        if mismatch:
            return DayOutcome(w.variety, day, **base, raw=raw, main_l5=main, no_data=no_data, error=(
                f"ChainError: {symbol} {day}: main_l5 differs from the kept raw ticks of {contract}: {mismatch}"))
    return DayOutcome(w.variety, day, **base, raw=raw, main_l5=stored.main_l5 if steps.main_l5 else None,
                      index=index, no_data=no_data)


def _record_no_data(qdb, contract: str, day: date, final: bool, open_no_data: set, now: datetime, max_retries: int,
                    writes: list) -> NoData:
    """An empty answer: recorded with its attempt count and the time to ask again (see domain.no_data)."""
    reason = "provider returned no ticks" if final else "provider returned no ticks (day unfinished)"
    attempts = (ledger.no_data_attempts(qdb, contract, day, "raw") if (contract, day) in open_no_data else 0) + 1
    retry_at = next_retry(now, attempts, max_retries)
    status = "retrying" if retry_at else "permanent"
    if retry_at is None:
        reason = permanent_reason(attempts, reason)
    writes.append(ledger.NoDataWrite(contract, day, "raw", reason, resolved=False, attempts=attempts,
                                     next_retry=retry_at, status=status))
    open_no_data.add((contract, day))
    return NoData(status, attempts, retry_at)
