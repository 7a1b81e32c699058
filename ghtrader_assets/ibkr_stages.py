"""IBKR backfill stages (discovery and the bar stages of stage_table) run by one StageRun, shared by assets and CLI."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from ghtrader_assets.domain.bar_merge import fetch_duration
from ghtrader_assets.domain.contracts_cache import (
    ContractsCacheError,
    OptionContract,
    cache_path,
    read_latest_cache,
    write_cache,
)
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.latest_status import SymbolStatus, apply, read_status, write_status
from ghtrader_assets.domain.option_subset import median_strike, near_the_money, unexpired
from ghtrader_assets.domain.outcome_check import OutcomeCheck, OutcomeThresholds, check_outcome
from ghtrader_assets.domain.run_summary import (
    Stage,
    Status,
    SummaryRecord,
    SummaryWriter,
    count_by_status,
    summary_path,
    window_key,
)
from ghtrader_assets.domain.stage_table import REFERENCE_SPEC, BarSpec, StageDef, stage_def
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.domain.us_sessions import NEW_YORK, last_completed_session
from ghtrader_assets.ibkr_settings import StoragePaths
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
    completed_close,
)

__all__ = ["BarSpec", "RunOptions", "StageReport", "StageRun", "StoragePaths", "SubsetSpec", "new_run_id",
           "run_bars", "run_contracts"]
log = logging.getLogger(__name__)
HOURS_SPEC = stage_def("hours").spec
MINUTES_SPEC = stage_def("minutes").spec
FALLBACK_SOURCE = "median strike (no underlying close)"


@dataclass(frozen=True)
class SubsetSpec:
    """Near-the-money subset: the first `expiries` unexpired expiries, `strikes_per_right` strikes
    per (expiry, right) nearest the reference price."""

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


OVERLAP_DAYS: float = RunOptions.overlap / timedelta(days=1)  # the default overlap as the CLI and config give it


@dataclass
class SymbolOutcome:
    """Per-symbol result of a stage: counts by status, bars written, a symbol-level error, the
    outcome check, and for discovery the band centre, candidates and gateway requests."""

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
    discovery_requests: int = 0
    discovery_s: float = 0.0
    candidates: int = 0
    latest: dict[str, int] = field(default_factory=dict)
    check: OutcomeCheck | None = None

    def line(self) -> str:
        """One log line."""
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        text = f"{self.symbol}: {counts} requests={self.requests} bars={self.bars}"
        if self.candidates:
            text += f" candidates={self.candidates} discovery_requests={self.discovery_requests} " \
                    f"discovery={self.discovery_s:.1f}s"
        if self.reference_price is not None:
            text += f" ref={self.reference_price:g} ({self.reference_source})"
        if self.check is not None and not self.check.passed:
            text += f" check failed: {self.check.message}"
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
        """Symbols with a symbol-level error."""
        return sorted(s for s, o in self.symbols.items() if o.error)

    @property
    def failed_checks(self) -> list[str]:
        """Symbols whose ERR or EMPTY share exceeds its threshold."""
        return sorted(s for s, o in self.symbols.items() if o.check is not None and not o.check.passed)

    @property
    def ok(self) -> bool:
        """The rule of the asset check and the CLI exit code: no symbol-level error, no failed check."""
        return not self.failed_symbols and not self.failed_checks


def new_run_id() -> str:
    """`cli-YYYYmmddTHHMMSSZ-xxxxxx`: sortable by start time, unique enough across hosts."""
    return f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


# Told of every summary record once it is counted, with the report so far (progress displays).
Listener = Callable[[SummaryRecord, StageReport], None]


class _Recorder:
    """Writes summary records (the audit log), folds them into the per-symbol latest status (the
    state resume and rerun read, rewritten after each record) and into per-symbol outcomes."""

    def __init__(self, report: StageReport, state_dir: Path, listener: Listener | None = None) -> None:
        self.report = report
        self.state_dir = state_dir
        self.listener = listener
        self.writer = None if report.dry_run else SummaryWriter(report.summary_path)
        self._lock = threading.Lock()  # records arrive from the session's worker threads
        self._status: dict[str, SymbolStatus] = {}

    def status(self, symbol: str) -> SymbolStatus:
        """The symbol's latest status in this stage (read once per run)."""
        with self._lock:
            return self._state(symbol)

    def _state(self, symbol: str) -> SymbolStatus:
        if symbol not in self._status:
            self._status[symbol] = read_status(self.state_dir, self.report.stage, symbol)
        return self._status[symbol]

    def outcome(self, symbol: str) -> SymbolOutcome:
        return self.report.symbols.setdefault(symbol, SymbolOutcome(symbol))

    def add(self, record: SummaryRecord) -> None:
        with self._lock:
            self._add(record)
            if self.listener is not None:
                self.listener(record, self.report)

    def _add(self, record: SummaryRecord) -> None:
        if self.writer is not None:
            self.writer.write(record)
            state = self._state(record.symbol)
            if apply(state, record):
                write_status(self.state_dir, state)
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

    def finish(self, window: str, thresholds: OutcomeThresholds) -> None:
        """Latest counts of the window and the outcome check of every symbol run. The check judges
        the symbol's latest status over every contract attempted in this window (a rerun of three
        failures is judged with the contracts that were OK before); a dry run judges its own counts."""
        for symbol, outcome in self.report.symbols.items():
            outcome.latest = self.status(symbol).counts(window)
            counts = outcome.counts if self.report.dry_run else outcome.latest
            if outcome.error is None:
                outcome.check = check_outcome(counts, thresholds)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class StageRun:
    """One stage over a list of symbols: the stage's table entry, settings, the resume window and
    the recorder, held once instead of being passed from helper to helper. `listener` is told of
    every summary record (progress displays)."""

    def __init__(
        self,
        stage: StageDef,
        gateway: GatewaySettings,
        paths: StoragePaths,
        options: RunOptions | None = None,
        spec: BarSpec | None = None,
        subset: SubsetSpec | None = None,
        discovery: DiscoveryBounds | None = None,
        thresholds: OutcomeThresholds | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.stage = stage
        self.gateway = gateway
        self.paths = paths
        self.options = options or RunOptions()
        self.spec = spec or stage.spec
        self.subset = subset or SubsetSpec()
        self.discovery = discovery or DiscoveryBounds()
        self.thresholds = thresholds or OutcomeThresholds()
        self.now = (self.options.end or datetime.now(UTC)).astimezone(UTC)
        self.session_day = last_completed_session(self.now)
        self.window = (f"contracts|{self.session_day.isoformat()}" if self.spec is None else
                       window_key(stage.name, self.spec.bar_size, self.spec.duration, self.spec.what,
                                  self.spec.use_rth, self.session_day))
        self.report = StageReport(stage.name, self.options.run_id,
                                  summary_path(paths.state_dir, stage.name, self.options.run_id),
                                  self.options.dry_run)
        self.recorder = _Recorder(self.report, paths.state_dir, listener)

    # ---- shared pieces
    def record(self, purpose: str, symbol: str, status: Status, **fields: object) -> None:
        self.recorder.add(SummaryRecord(self.options.run_id, self.stage.name, purpose, symbol,  # type: ignore[arg-type]
                                        self.window, status, **fields))  # type: ignore[arg-type]

    def symbol_error(self, symbol: str, message: str) -> None:
        self.record("symbol", symbol, Status.ERR, error_message=message)

    def open_session(self, symbols: Sequence[str]) -> IBGatewaySession | None:
        """An open gateway session, or None after recording a symbol-level ERR for every symbol when
        the gateway cannot be reached."""
        try:
            return IBGatewaySession.open(self.gateway)
        except GatewayUnavailableError as exc:
            for symbol in symbols:
                self.symbol_error(symbol, str(exc))
            return None

    def run(self, entries: Sequence[UniverseEntry]) -> StageReport:
        """Run the stage and return its report (summary written, latest status updated)."""
        started = time.monotonic()
        try:
            if self.spec is None:
                self._contracts(entries)
            else:
                self._bars(entries)
            self.recorder.finish(self.window, self.thresholds)
            return self.report
        finally:
            self.recorder.close()
            self.report.elapsed_s = time.monotonic() - started

    # ---- discovery
    def _contracts(self, entries: Sequence[UniverseEntry]) -> None:
        """Bounded discovery per symbol, written to `contracts_cache/{SYMBOL}_{session date}.json`
        (the last completed session, so a whole weekend shares one cache); a symbol already cached
        for that date is SKIPPED unless forced."""
        day = self.session_day
        todo: list[UniverseEntry] = []
        for entry in entries:
            target = cache_path(self.paths.cache_dir, entry.symbol, day)
            self.recorder.outcome(entry.symbol).cache_path = str(target)
            if target.exists() and not self.options.force:
                self.record("discovery", entry.symbol, Status.SKIPPED, conid=entry.conid, output_path=str(target),
                            error_message="cache for this date exists")
            else:
                self.recorder.outcome(entry.symbol).planned += 1
                todo.append(entry)
        if not todo or self.options.dry_run:
            return
        session = self.open_session([e.symbol for e in todo])
        if session is None:
            return
        with session:
            today = self.now.astimezone(NEW_YORK).date()
            session.discover_many([StockRef(e.symbol, e.conid) for e in todo], today, self._discovered,
                                  self.paths.discovery_workers, self.discovery, self.options.end)
            self.report.gateway = session.stats

    def _discovered(self, stock: StockRef, found: Discovery | Exception) -> None:
        def fail(message: str, **fields: object) -> None:
            self.record("discovery", stock.symbol, Status.ERR, conid=stock.conid, error_message=message, **fields)
            self.recorder.outcome(stock.symbol).error = message

        if isinstance(found, Exception):
            return fail(str(found))
        outcome = self.recorder.outcome(stock.symbol)
        outcome.discovery_requests, outcome.discovery_s = found.requests, found.elapsed_s
        outcome.candidates = found.candidates
        outcome.reference_price = found.close
        outcome.reference_source = "underlying close" if found.close is not None else "median strike (no close)"
        stats = {"requests": found.requests, "elapsed_s": found.elapsed_s}
        if not found.contracts:
            return fail(f"{stock.symbol}: no option contract qualified ({found.candidates} candidates)", **stats)
        try:
            written = write_cache(self.paths.cache_dir, stock.symbol, self.session_day, found.contracts)
        except OSError as exc:
            return fail(f"cannot write the contracts cache: {exc}", **stats)
        centre = f"close {found.close:g}" if found.close is not None else "median strike (no close)"
        self.record("discovery", stock.symbol, Status.OK, conid=found.underlying_conid, bars=len(found.contracts),
                    output_path=str(written),
                    error_message=f"{found.candidates} candidates of a {found.chain_size}-option chain around "
                                  f"{centre}; {found.unknown} unknown to IB", **stats)

    # ---- bar stages
    def _bars(self, entries: Sequence[UniverseEntry]) -> None:
        """Bars of every unexpired cached contract or of the near-the-money subset, merged into
        Parquet, one summary record per request. Contracts whose latest status is OK for this
        window are SKIPPED unless forced. A missing or malformed cache is a symbol-level ERR,
        never an implicit rebuild."""
        chains = self._live_contracts(entries)
        if not chains:
            return
        problem = None if self.options.dry_run else _unwritable(self.paths.data_root)
        if problem:
            for symbol in chains:
                self.symbol_error(symbol, problem)
            return
        session = None
        if not self.options.dry_run:
            session = self.open_session(list(chains))
            if session is None:
                return
        try:
            if self.stage.needs_reference:
                self._reference_prices(session, chains)
            jobs: list[OptionContract] = []
            for symbol, (_, live) in chains.items():
                jobs += self._plan_jobs(symbol, self._subset(symbol, live))
            if session is not None:
                session.fetch_many(jobs, self._plan_request, self._store)
                self.report.gateway = session.stats
        finally:
            if session is not None:
                session.close()

    def _subset(self, symbol: str, live: tuple[OptionContract, ...]) -> Sequence[OptionContract]:
        price = self.recorder.outcome(symbol).reference_price
        if self.stage.subset == "near_the_money" and price is not None:
            return near_the_money(live, self.now, price, self.subset.expiries, self.subset.strikes_per_right)
        return live

    def _live_contracts(
        self, entries: Sequence[UniverseEntry]
    ) -> dict[str, tuple[UniverseEntry, tuple[OptionContract, ...]]]:
        """Unexpired contracts of each symbol's latest cache (restricted by options.only_conids); a
        missing, malformed or fully expired cache is a symbol-level ERR."""
        chains: dict[str, tuple[UniverseEntry, tuple[OptionContract, ...]]] = {}
        for entry in entries:
            try:
                cache, contracts = read_latest_cache(self.paths.cache_dir, entry.symbol)
            except ContractsCacheError as exc:
                self.symbol_error(entry.symbol, str(exc))
                continue
            self.recorder.outcome(entry.symbol).cache_path = str(cache)
            live = unexpired(contracts, self.now)
            if not live:
                self.symbol_error(entry.symbol, f"{cache}: every contract has expired; run the contracts stage")
                continue
            wanted = (self.options.only_conids or {}).get(entry.symbol)
            if wanted is not None:
                live = tuple(c for c in live if c.conid in wanted)
            chains[entry.symbol] = (entry, live)
        return chains

    def _target(self, contract: OptionContract) -> Path:
        assert self.spec is not None
        return bar_path(self.paths.data_root, self.paths.scope, contract.symbol, contract.conid, self.spec.what,
                        self.spec.bar_size)

    def _plan_jobs(self, symbol: str, chosen: Sequence[OptionContract]) -> list[OptionContract]:
        """Contracts to request: those whose latest status is OK for this window are SKIPPED unless
        forced (the symbol's state file only: no history read)."""
        done = set() if self.options.force else self.recorder.status(symbol).ok_conids(self.window)
        jobs: list[OptionContract] = []
        for contract in chosen:
            if contract.conid in done and not _stored_file_broken(self._target(contract)):
                self._bars_record(contract, Status.SKIPPED, error_message="already OK for this window")
            else:
                self.recorder.outcome(symbol).planned += 1
                jobs.append(contract)
        return jobs

    def _plan_request(self, contract: OptionContract) -> tuple[OptionContract, BarQuery]:
        assert self.spec is not None
        last = last_stored_ts(self._target(contract)) if self.options.incremental else None
        duration = fetch_duration(self.spec.duration, self.now, last, self.options.overlap)
        return contract, BarQuery(replace(self.spec, duration=duration), self.options.end)

    def _store(self, contract: OptionContract, result: BarFetch) -> None:
        """Merge one answer into its Parquet file (under the file's lock) and record the outcome."""
        common = {"duration": result.query.spec.duration if result.query else None, "elapsed_s": result.elapsed_s,
                  "attempts": result.attempts}
        if result.status is not Status.OK:
            self._bars_record(contract, result.status, error_code=result.error_code,
                              error_message=result.error_message, **common)
            return
        path = self._target(contract)
        try:
            stored = merge_into(path, result.bars, self.options.incremental)
        except Exception as exc:  # one contract's local failure (disk, file system) must not end the run
            log.exception("%s %s: storing bars failed", contract.symbol, contract.conid)
            self._bars_record(contract, Status.ERR, error_message=f"store failed: {type(exc).__name__}: {exc}",
                              **common)
            return
        note = None
        if stored.quarantined is not None:
            note = f"unreadable file moved aside to {stored.quarantined}: {stored.quarantine_reason}"
            log.warning("%s", note)
        self._bars_record(contract, Status.OK, bars=result.bars.height, first=result.first, last=result.last,
                          output_path=str(path), error_message=note, **common)

    def _bars_record(self, contract: OptionContract, status: Status, duration: str | None = None,
                     **fields: object) -> None:
        assert self.spec is not None
        self.record("bars", contract.symbol, status, conid=contract.conid, bar_size=self.spec.bar_size,
                    what=self.spec.what, duration=duration or self.spec.duration, **fields)

    def _reference_prices(
        self, session: IBGatewaySession | None, chains: Mapping[str, tuple[UniverseEntry, tuple[OptionContract, ...]]]
    ) -> None:
        """Each symbol's last completed daily close (`1 day` TRADES over `5 D`; today's unfinished
        bar excluded), else the median strike of its unexpired chain (the documented fallback; dry
        runs use it without asking the gateway)."""
        if session is None:
            for symbol, (_, live) in chains.items():
                if live:
                    outcome = self.recorder.outcome(symbol)
                    outcome.reference_price, outcome.reference_source = median_strike(live), FALLBACK_SOURCE
            return
        query = BarQuery(REFERENCE_SPEC, self.options.end)
        spec = query.spec

        def plan(symbol: str) -> tuple[StockRef, BarQuery]:
            entry = chains[symbol][0]
            return StockRef(entry.symbol, entry.conid), query

        def done(symbol: str, result: BarFetch) -> None:
            entry, live = chains[symbol]
            self.record("reference", symbol, result.status, conid=entry.conid, bar_size=spec.bar_size,
                        what=spec.what, duration=spec.duration, bars=result.bars.height, first=result.first,
                        last=result.last, error_code=result.error_code, error_message=result.error_message,
                        elapsed_s=result.elapsed_s, attempts=result.attempts)
            close = completed_close(result, self.options.end or self.now)
            outcome = self.recorder.outcome(symbol)
            if close is not None:
                outcome.reference_price, outcome.reference_source = close, "underlying close"
            else:
                outcome.reference_price, outcome.reference_source = median_strike(live), FALLBACK_SOURCE

        session.fetch_many([symbol for symbol, (_, live) in chains.items() if live], plan, done)


def _stored_file_broken(path: Path) -> bool:
    """A file the state says was written OK that is now missing or has no readable Parquet footer
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


def run_contracts(
    entries: Sequence[UniverseEntry],
    gateway: GatewaySettings,
    paths: StoragePaths,
    options: RunOptions | None = None,
    discovery: DiscoveryBounds | None = None,
    thresholds: OutcomeThresholds | None = None,
) -> StageReport:
    """The contracts stage (bounded discovery) for `entries`; see StageRun._contracts."""
    return StageRun(stage_def("contracts"), gateway, paths, options, discovery=discovery,
                    thresholds=thresholds).run(entries)


def run_bars(
    stage: str,
    entries: Sequence[UniverseEntry],
    gateway: GatewaySettings,
    paths: StoragePaths,
    options: RunOptions | None = None,
    spec: BarSpec | None = None,
    subset: SubsetSpec | None = None,
    thresholds: OutcomeThresholds | None = None,
) -> StageReport:
    """A bar stage of stage_table (hours, minutes, ...) for `entries`; see StageRun._bars. `spec`
    overrides the table's bar request."""
    return StageRun(stage_def(stage), gateway, paths, options, spec, subset, thresholds=thresholds).run(entries)

