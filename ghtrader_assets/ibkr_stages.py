"""IBKR backfill stages (contracts, hours, minutes) as plain functions, shared by the Dagster assets and the CLI."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from ghtrader_assets.domain.bar_merge import fetch_duration
from ghtrader_assets.domain.contracts_cache import (
    ContractsCacheError,
    OptionContract,
    cache_path,
    read_latest_cache,
    write_cache,
)
from ghtrader_assets.domain.option_subset import NEW_YORK, median_strike, near_the_money, unexpired
from ghtrader_assets.domain.run_summary import (
    Stage,
    Status,
    SummaryRecord,
    SummaryWriter,
    count_by_status,
    ok_keys,
    read_stage_records,
    summary_path,
    window_key,
)
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.io.bar_store import bar_path, last_stored_ts, merge_into
from ghtrader_assets.io.ib_gateway import (
    BarFetch,
    BarQuery,
    Discovery,
    GatewaySettings,
    GatewayStats,
    GatewayUnavailableError,
    IBGatewaySession,
    StockRef,
)

log = logging.getLogger(__name__)
BarStage = Literal["hours", "minutes"]
DISCOVERY_WORKERS = 4  # symbols discovered at once; each qualifies its own batches


@dataclass(frozen=True)
class StoragePaths:
    """Where bars, caches and summaries live. Bars: `data_root/historical_bars_<scope>/...`;
    caches: `state_dir/contracts_cache/`; summaries: `state_dir/run_logs/<stage>/`."""

    data_root: Path = Path("data_test/raw/ib")
    scope: str = "weekend"
    state_dir: Path = Path("state")

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "contracts_cache"


@dataclass(frozen=True)
class BarSpec:
    """What one bar stage requests: IB bar size, duration (`N S|D|W|M|Y`), whatToShow, useRTH."""

    bar_size: str
    duration: str
    what: str = "TRADES"
    use_rth: bool = True


HOURS_SPEC = BarSpec("8 hours", "6 M")
MINUTES_SPEC = BarSpec("30 mins", "1 M")
REFERENCE_SPEC = BarSpec("1 day", "5 D")  # the underlying's latest daily close for the minutes subset
FALLBACK_SOURCE = "median strike (no underlying close)"


@dataclass(frozen=True)
class SubsetSpec:
    """Minutes subset: the first `expiries` unexpired expiries, `strikes_per_right` strikes per
    (expiry, right) nearest the reference price."""

    expiries: int = 2
    strikes_per_right: int = 5


@dataclass(frozen=True)
class RunOptions:
    """`end` None means now (the gateway's clock); `only_conids` restricts the listed symbols to
    those contracts (rerun of specific failures; unlisted symbols keep all); `overlap` is
    re-fetched before the last stored bar."""

    run_id: str = field(default_factory=lambda: new_run_id())
    end: datetime | None = None
    force: bool = False
    dry_run: bool = False
    incremental: bool = True
    overlap: timedelta = timedelta(days=3)
    only_conids: Mapping[str, frozenset[int]] | None = None


@dataclass
class SymbolOutcome:
    """Per-symbol result of a stage: counts by status, bars written, and a symbol-level error."""

    symbol: str
    counts: dict[str, int] = field(default_factory=lambda: count_by_status(()))
    requests: int = 0
    bars: int = 0
    planned: int = 0
    error: str | None = None
    cache_path: str | None = None
    reference_price: float | None = None
    reference_source: str | None = None
    paths: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One log line."""
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        text = f"{self.symbol}: {counts} requests={self.requests} bars={self.bars}"
        if self.reference_price is not None:
            text += f" ref={self.reference_price:g} ({self.reference_source})"
        return text + (f" error: {self.error}" if self.error else "")


@dataclass
class StageReport:
    """Result of one stage run over a list of symbols."""

    stage: Stage
    run_id: str
    summary_path: Path
    dry_run: bool = False
    symbols: dict[str, SymbolOutcome] = field(default_factory=dict)
    gateway: GatewayStats = field(default_factory=GatewayStats)
    elapsed_s: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        total = count_by_status(())
        for outcome in self.symbols.values():
            for status, n in outcome.counts.items():
                total[status] += n
        return total

    @property
    def requests(self) -> int:
        return sum(o.requests for o in self.symbols.values())

    @property
    def bars(self) -> int:
        return sum(o.bars for o in self.symbols.values())

    @property
    def failed_symbols(self) -> list[str]:
        return sorted(s for s, o in self.symbols.items() if o.error)


def new_run_id() -> str:
    """`cli-YYYYmmddTHHMMSSZ-xxxxxx`: sortable by start time, unique enough across hosts."""
    return f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class _Recorder:
    """Writes summary records and folds them into per-symbol outcomes."""

    def __init__(self, report: StageReport) -> None:
        self.report = report
        self.writer = None if report.dry_run else SummaryWriter(report.summary_path)
        self._lock = threading.Lock()  # records arrive from the session's worker threads
        self._ok_keys: set[tuple[str, int]] | None = None

    def resume_keys(self, state_dir: Path, stage: Stage, force: bool) -> set[tuple[str, int]]:
        """Resume set of earlier runs (read once per run; empty when forced)."""
        if self._ok_keys is None:
            self._ok_keys = set() if force else ok_keys(read_stage_records(state_dir, stage))
        return self._ok_keys

    def outcome(self, symbol: str) -> SymbolOutcome:
        return self.report.symbols.setdefault(symbol, SymbolOutcome(symbol))

    def add(self, record: SummaryRecord) -> None:
        with self._lock:
            self._add(record)

    def _add(self, record: SummaryRecord) -> None:
        if self.writer is not None:
            self.writer.write(record)
        outcome = self.outcome(record.symbol)
        if record.purpose != "reference":  # the reference close is auxiliary, not a stage outcome
            outcome.counts[str(record.status)] += 1
        if record.purpose == "symbol":
            outcome.error = record.error_message
        elif record.status is not Status.SKIPPED:
            outcome.requests += 1
        if record.status is Status.OK and record.purpose == "bars":
            outcome.bars += record.bars
            if record.output_path:
                outcome.paths.append(record.output_path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _now(options: RunOptions) -> datetime:
    return (options.end or datetime.now(UTC)).astimezone(UTC)


def run_contracts(
    entries: Sequence[UniverseEntry],
    gateway: GatewaySettings,
    paths: StoragePaths,
    options: RunOptions | None = None,
) -> StageReport:
    """Discovery: SMART chain + batched qualify per symbol, written to
    `contracts_cache/{SYMBOL}_{New York date}.json`. A symbol already cached for that date is
    SKIPPED unless forced."""
    options = options or RunOptions()
    started = time.monotonic()
    day = _now(options).astimezone(NEW_YORK).date()
    window = f"contracts|{day.isoformat()}"
    report = StageReport("contracts", options.run_id, summary_path(paths.state_dir, "contracts", options.run_id),
                         options.dry_run)
    recorder = _Recorder(report)
    todo: list[UniverseEntry] = []
    for entry in entries:
        target = cache_path(paths.cache_dir, entry.symbol, day)
        recorder.outcome(entry.symbol).cache_path = str(target)
        if target.exists() and not options.force:
            recorder.add(SummaryRecord(options.run_id, "contracts", "discovery", entry.symbol, window,
                                       Status.SKIPPED, conid=entry.conid, output_path=str(target),
                                       error_message="cache for this date exists"))
        else:
            recorder.outcome(entry.symbol).planned += 1
            todo.append(entry)

    def fail(stock: StockRef, message: str) -> None:
        recorder.add(SummaryRecord(options.run_id, "contracts", "discovery", stock.symbol, window, Status.ERR,
                                   conid=stock.conid, error_message=message))
        recorder.outcome(stock.symbol).error = message

    def done(stock: StockRef, found: Discovery | Exception) -> None:
        if isinstance(found, Exception):
            return fail(stock, str(found))
        if not found.contracts:
            return fail(stock, f"{stock.symbol}: no option contract qualified")
        try:
            written = write_cache(paths.cache_dir, stock.symbol, day, found.contracts)
        except OSError as exc:
            return fail(stock, f"cannot write the contracts cache: {exc}")
        recorder.add(SummaryRecord(options.run_id, "contracts", "discovery", stock.symbol, window, Status.OK,
                                   conid=found.underlying_conid, bars=len(found.contracts), output_path=str(written),
                                   error_message=f"{found.unknown} chain candidates unknown to IB"
                                   if found.unknown else None))

    try:
        if todo and not options.dry_run:
            with _session(gateway, recorder, "contracts", window, [e.symbol for e in todo]) as gw:
                if gw is not None:
                    gw.discover_many([StockRef(e.symbol, e.conid) for e in todo], day, done, DISCOVERY_WORKERS)
                    report.gateway = gw.stats
        return report
    finally:
        recorder.close()
        report.elapsed_s = time.monotonic() - started


@contextmanager
def _session(
    gateway: GatewaySettings, recorder: _Recorder, stage: Stage, window: str, symbols: Sequence[str]
) -> Iterator[IBGatewaySession | None]:
    """An open gateway session, or None after recording a symbol-level ERR for every symbol when
    the gateway cannot be reached."""
    try:
        session = IBGatewaySession.open(gateway)
    except GatewayUnavailableError as exc:
        for symbol in symbols:
            recorder.add(_symbol_error(recorder.report.run_id, stage, symbol, window, str(exc)))
        yield None
        return
    with session:
        yield session


def _symbol_error(run_id: str, stage: Stage, symbol: str, window: str, message: str) -> SummaryRecord:
    return SummaryRecord(run_id, stage, "symbol", symbol, window, Status.ERR, error_message=message)


def run_bars(
    stage: BarStage,
    entries: Sequence[UniverseEntry],
    gateway: GatewaySettings,
    paths: StoragePaths,
    options: RunOptions | None = None,
    spec: BarSpec | None = None,
    subset: SubsetSpec | None = None,
) -> StageReport:
    """Hours (every unexpired cached contract) or minutes (near-the-money subset) bars for the
    given symbols, merged into Parquet, one summary record per request. Contracts OK for the same
    window are SKIPPED unless `options.force`. A missing or malformed cache is an ERR record for
    that symbol (SymbolOutcome.error), never an implicit rebuild."""
    options = options or RunOptions()
    spec = spec or (HOURS_SPEC if stage == "hours" else MINUTES_SPEC)
    subset = subset or SubsetSpec()
    started = time.monotonic()
    now = _now(options)
    window = window_key(stage, spec.bar_size, spec.duration, spec.what, spec.use_rth,
                        now.astimezone(NEW_YORK).date())
    report = StageReport(stage, options.run_id, summary_path(paths.state_dir, stage, options.run_id),
                         options.dry_run)
    recorder = _Recorder(report)
    try:
        chains = _live_contracts(entries, paths, options, now, recorder, stage, window)
        if not chains:
            return report
        problem = None if options.dry_run else _unwritable(paths.data_root)
        if problem:
            for symbol in chains:
                recorder.add(_symbol_error(options.run_id, stage, symbol, window, problem))
            return report
        opened: AbstractContextManager[IBGatewaySession | None] = (
            nullcontext(None) if options.dry_run else _session(gateway, recorder, stage, window, list(chains)))
        with opened as gw:
            if gw is None and not options.dry_run:
                return report
            if stage == "minutes":
                _reference_prices(gw, chains, options, recorder, window)
            jobs: list[OptionContract] = []
            for symbol, (_, live) in chains.items():
                chosen = live
                price = recorder.outcome(symbol).reference_price
                if stage == "minutes" and price is not None:
                    chosen = near_the_money(live, now, price, subset.expiries, subset.strikes_per_right)
                jobs += _plan_jobs(chosen, symbol, options, stage, window, spec, recorder, paths)
            if gw is not None:
                _fetch_and_store(gw, jobs, options, stage, window, spec, recorder, paths, now)
                report.gateway = gw.stats
        return report
    finally:
        recorder.close()
        report.elapsed_s = time.monotonic() - started


def _live_contracts(
    entries: Sequence[UniverseEntry],
    paths: StoragePaths,
    options: RunOptions,
    now: datetime,
    recorder: _Recorder,
    stage: Stage,
    window: str,
) -> dict[str, tuple[UniverseEntry, tuple[OptionContract, ...]]]:
    """Unexpired contracts of each symbol's latest cache (restricted by options.only_conids); a
    missing, malformed or fully expired cache is a symbol-level ERR."""
    chains: dict[str, tuple[UniverseEntry, tuple[OptionContract, ...]]] = {}
    for entry in entries:
        try:
            cache, contracts = read_latest_cache(paths.cache_dir, entry.symbol)
        except ContractsCacheError as exc:
            recorder.add(_symbol_error(options.run_id, stage, entry.symbol, window, str(exc)))
            continue
        recorder.outcome(entry.symbol).cache_path = str(cache)
        live = unexpired(contracts, now)
        if not live:
            recorder.add(_symbol_error(options.run_id, stage, entry.symbol, window,
                                       f"{cache}: every contract has expired; run the contracts stage"))
            continue
        wanted = (options.only_conids or {}).get(entry.symbol)
        if wanted is not None:
            live = tuple(c for c in live if c.conid in wanted)
        chains[entry.symbol] = (entry, live)
    return chains


def _plan_jobs(
    chosen: Sequence[OptionContract],
    symbol: str,
    options: RunOptions,
    stage: Stage,
    window: str,
    spec: BarSpec,
    recorder: _Recorder,
    paths: StoragePaths,
) -> list[OptionContract]:
    """Contracts to request: those already OK for this window are SKIPPED unless forced."""
    done = recorder.resume_keys(paths.state_dir, stage, options.force)
    jobs: list[OptionContract] = []
    for contract in chosen:
        if (window, contract.conid) in done and not _stored_file_broken(
                bar_path(paths.data_root, paths.scope, contract.symbol, contract.conid, spec.what, spec.bar_size)):
            recorder.add(_bars_record(options, stage, window, spec, contract, Status.SKIPPED,
                                      error_message="already OK for this window"))
        else:
            recorder.outcome(symbol).planned += 1
            jobs.append(contract)
    return jobs


def _stored_file_broken(path: Path) -> bool:
    """A file the summary says was written OK that is now missing or has no readable Parquet footer
    (truncated, e.g. by a crash of another tool): it is fetched again rather than skipped."""
    try:
        pl.read_parquet_schema(path)
        return False
    except Exception as exc:  # noqa: BLE001 - missing, truncated or not Parquet at all
        log.warning("%s: OK in an earlier run but now unreadable (%s): fetching it again", path, exc)
        return True


def _unwritable(root: Path) -> str | None:
    """Why bars cannot be written under `root` (not a directory, permission denied, disk full), or None."""
    probe = root / f".write-probe-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return f"cannot write bars under {root}: {exc.strerror or exc} ({type(exc).__name__}: {exc})"
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def _fetch_and_store(
    gw: IBGatewaySession,
    jobs: Sequence[OptionContract],
    options: RunOptions,
    stage: Stage,
    window: str,
    spec: BarSpec,
    recorder: _Recorder,
    paths: StoragePaths,
    now: datetime,
) -> None:
    """Request every job's bars and merge them into its Parquet file, recording each outcome."""

    def target(contract: OptionContract) -> Path:
        return bar_path(paths.data_root, paths.scope, contract.symbol, contract.conid, spec.what, spec.bar_size)

    def plan(contract: OptionContract) -> tuple[OptionContract, BarQuery]:
        last = last_stored_ts(target(contract)) if options.incremental else None
        duration = fetch_duration(spec.duration, now, last, options.overlap)
        return contract, BarQuery(spec.bar_size, duration, spec.what, spec.use_rth, options.end)

    def done(contract: OptionContract, result: BarFetch) -> None:
        duration = result.query.duration if result.query else None
        if result.status is not Status.OK:
            recorder.add(_bars_record(options, stage, window, spec, contract, result.status, duration=duration,
                                      error_code=result.error_code, error_message=result.error_message,
                                      elapsed_s=result.elapsed_s, attempts=result.attempts))
            return
        path = target(contract)
        try:
            stored = merge_into(path, result.bars, options.incremental)
        except Exception as exc:  # one contract's local failure (disk, file system) must not end the run
            log.exception("%s %s: storing bars failed", contract.symbol, contract.conid)
            recorder.add(_bars_record(options, stage, window, spec, contract, Status.ERR, duration=duration,
                                      error_message=f"store failed: {type(exc).__name__}: {exc}",
                                      elapsed_s=result.elapsed_s, attempts=result.attempts))
            return
        note = None
        if stored.quarantined is not None:
            note = f"unreadable file moved aside to {stored.quarantined}: {stored.quarantine_reason}"
            log.warning("%s", note)
        recorder.add(_bars_record(options, stage, window, spec, contract, Status.OK, duration=duration,
                                  bars=result.bars.height, first=result.first, last=result.last,
                                  output_path=str(path), error_message=note, elapsed_s=result.elapsed_s,
                                  attempts=result.attempts))

    gw.fetch_many(jobs, plan, done)


def _reference_prices(
    gw: IBGatewaySession | None,
    chains: Mapping[str, tuple[UniverseEntry, tuple[OptionContract, ...]]],
    options: RunOptions,
    recorder: _Recorder,
    window: str,
) -> None:
    """Each symbol's latest daily close (`1 day` TRADES over `5 D`), else the median strike of its
    unexpired chain (the documented fallback; dry runs use it without asking the gateway)."""
    if gw is None:
        for symbol, (_, live) in chains.items():
            if live:
                outcome = recorder.outcome(symbol)
                outcome.reference_price, outcome.reference_source = median_strike(live), FALLBACK_SOURCE
        return
    query = BarQuery(REFERENCE_SPEC.bar_size, REFERENCE_SPEC.duration, REFERENCE_SPEC.what, True, options.end)

    def plan(symbol: str) -> tuple[StockRef, BarQuery]:
        entry = chains[symbol][0]
        return StockRef(entry.symbol, entry.conid), query

    def done(symbol: str, result: BarFetch) -> None:
        entry, live = chains[symbol]
        recorder.add(SummaryRecord(
            options.run_id, "minutes", "reference", symbol, window, result.status, conid=entry.conid,
            bar_size=query.bar_size, what=query.what, duration=query.duration, bars=result.bars.height,
            first=result.first, last=result.last, error_code=result.error_code,
            error_message=result.error_message, elapsed_s=result.elapsed_s, attempts=result.attempts))
        close = float(result.bars["close"][-1]) if result.status is Status.OK else 0.0
        outcome = recorder.outcome(symbol)
        if close > 0:
            outcome.reference_price, outcome.reference_source = close, "underlying close"
        else:
            outcome.reference_price, outcome.reference_source = median_strike(live), FALLBACK_SOURCE

    gw.fetch_many([symbol for symbol, (_, live) in chains.items() if live], plan, done)


def _bars_record(
    options: RunOptions,
    stage: Stage,
    window: str,
    spec: BarSpec,
    contract: OptionContract,
    status: Status,
    duration: str | None = None,
    **fields: object,
) -> SummaryRecord:
    return SummaryRecord(options.run_id, stage, "bars", contract.symbol, window, status, conid=contract.conid,
                         bar_size=spec.bar_size, what=spec.what, duration=duration or spec.duration,
                         **fields)  # type: ignore[arg-type]


def run_ibkr_demo(
    host: str,
    port: int,
    symbols: Sequence[str] = ("AAPL", "MSFT", "SPY"),
    root: Path = Path("data_test/raw/ib"),
    state: Path = Path("state"),
    client_id: int = 17,
    scope: str = "demo",
    end: datetime | None = None,
    settings: GatewaySettings | None = None,
) -> dict[str, int]:
    """Discovery, hours and minutes for `symbols` against the gateway at host:port; returns the
    summary counts by status (OK, EMPTY, ERR, SKIPPED) over the three stages. `end` stands for
    "now" (e.g. a simulator's as_of); `settings` overrides the pacing defaults (host/port kept)."""
    # Defaults stay within a real gateway's limits (45 messages/s, 40 open requests); against the
    # simulator pass settings=GatewaySettings(client_msg_rate=0, rate_per_s=200) to run in seconds.
    settings = replace(settings or GatewaySettings(request_timeout_s=30.0, rate_per_s=40.0), host=host,
                       port=port, client_id=client_id)
    paths = StoragePaths(data_root=Path(root), scope=scope, state_dir=Path(state))
    entries = tuple(UniverseEntry(s.upper()) for s in symbols)
    run_id = new_run_id()
    totals = count_by_status(())
    reports = [run_contracts(entries, settings, paths, RunOptions(run_id=run_id, end=end))]
    for stage in ("hours", "minutes"):
        reports.append(run_bars(stage, entries, settings, paths, RunOptions(run_id=run_id, end=end)))
    for report in reports:
        for status, n in report.counts.items():
            totals[status] += n
    return totals
