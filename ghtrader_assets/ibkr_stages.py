"""IBKR backfill stages (discovery and the bar stages of stage_table) run by one StageRun, shared by assets and CLI."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ghtrader_assets.domain.contracts_cache import ContractsCacheError, OptionContract, cache_path
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.expiry import ExpiryRule, served
from ghtrader_assets.domain.option_subset import median_strike
from ghtrader_assets.domain.outcome_check import OutcomeThresholds
from ghtrader_assets.domain.run_summary import Status, SummaryRecord, summary_path, window_key
from ghtrader_assets.domain.stage_table import REFERENCE_SPEC, BarSpec, StageDef
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.domain.us_sessions import NEW_YORK, last_completed_session
from ghtrader_assets.ibkr_plan import (
    CLOSE_SOURCE,
    FALLBACK_SOURCE,
    PlannedRequest,
    SubsetSpec,
    SymbolPlan,
    choose_contracts,
    plan_requests,
)
from ghtrader_assets.ibkr_report import Listener, Recorder, StageReport, SymbolOutcome, new_run_id
from ghtrader_assets.ibkr_settings import StoragePaths
from ghtrader_assets.io.bar_store import bar_path, merge_into, stored_extent
from ghtrader_assets.io.ib_gateway import (
    BarFetch,
    BarQuery,
    Discovery,
    GatewaySettings,
    GatewayUnavailableError,
    IBGatewaySession,
    StockRef,
    completed_close,
)
from ghtrader_assets.io.ibkr_state import find_contracts, read_latest_cache, write_cache

__all__ = ["BarSpec", "RunOptions", "StageReport", "StageRun", "StoragePaths", "SubsetSpec", "SymbolOutcome",
           "new_run_id"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """`end` None means now; `only_conids` restricts the listed symbols to those contracts (rerun of
    specific failures; unlisted symbols keep all); `overlap` is re-fetched before the last stored
    bar; `capture`: only the contracts about to expire (the daily capture, expiry.capture_set);
    `require_close`: a subset stage without the underlying's close fails the symbol instead of
    centring on the median strike (--no-skip-underlying-close)."""

    run_id: str = field(default_factory=lambda: new_run_id())
    end: datetime | None = None
    force: bool = False
    dry_run: bool = False
    incremental: bool = True
    overlap: timedelta = timedelta(days=3)
    only_conids: Mapping[str, frozenset[int]] | None = None
    capture: bool = False
    require_close: bool = False


OVERLAP_DAYS: float = RunOptions.overlap / timedelta(days=1)  # the default overlap as the CLI and config give it


class StageRun:
    """One stage over a list of symbols: plan (caches, state, stored extents and reference prices
    read; ibkr_plan chooses contracts and requests; a dry run stops here), then execute (the
    gateway's results consumed in request order, each merged into its file and recorded)."""

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
        expiry: ExpiryRule | None = None,
    ) -> None:
        self.stage = stage
        self.gateway = gateway
        self.paths = paths
        self.options = options or RunOptions()
        self.spec = spec or stage.spec
        self.subset = subset or SubsetSpec()
        self.discovery = discovery or DiscoveryBounds()
        self.thresholds = thresholds or OutcomeThresholds()
        self.expiry = expiry or ExpiryRule()
        self.now = (self.options.end or datetime.now(UTC)).astimezone(UTC)
        self.session_day = last_completed_session(self.now)
        self.window = (f"contracts|{self.session_day.isoformat()}" if self.spec is None else
                       window_key(stage.name, self.spec.bar_size, self.spec.duration, self.spec.what,
                                  self.spec.use_rth, self.session_day))
        self.report = StageReport(stage.name, self.options.run_id,
                                  None if self.options.dry_run else
                                  summary_path(paths.state_dir, stage.name, self.options.run_id),
                                  self.options.dry_run)
        self.recorder = Recorder(self.report, paths.state_dir, listener)

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
            self.recorder.finish(self.window, self.thresholds, self.now, self.expiry)
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
            stocks = [StockRef(e.symbol, e.conid) for e in todo]
            found = session.discover_all(stocks, today, self.paths.discovery_workers, self.discovery,
                                         self.options.end)
            for stock, result in zip(stocks, found, strict=True):
                self._discovered(stock, result)
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
        """Plan every symbol, then (unless a dry run) request and store. A missing or malformed cache
        is a symbol-level ERR, never an implicit rebuild."""
        loaded = self._load(entries)
        if not loaded:
            return
        problem = None if self.options.dry_run else _unwritable(self.paths.data_root)
        if problem:
            for symbol in loaded:
                self.symbol_error(symbol, problem)
            return
        session = None
        if (not self.options.dry_run or self.stage.needs_reference):
            # a dry run of a subset stage asks the gateway for the reference closes only, so it prints
            # the subset a real run would pick
            try:
                session = IBGatewaySession.open(self.gateway)
            except GatewayUnavailableError as exc:
                if not self.options.dry_run:
                    for symbol in loaded:
                        self.symbol_error(symbol, str(exc))
                    return
                log.warning("dry run without reference closes: %s", exc)
        try:
            references = self._reference_prices(session, loaded) if self.stage.needs_reference else {}
            plans = [self._plan(symbol, cached, references.get(symbol)) for symbol, cached in loaded.items()]
            for plan in plans:
                outcome = self.recorder.outcome(plan.symbol)
                outcome.plan = plan
                outcome.reference_price, outcome.reference_source = plan.reference_price, plan.reference_source
                if plan.error:
                    self.symbol_error(plan.symbol, plan.error)
                    continue
                outcome.planned += len(plan.requests)
                for contract in plan.skipped:
                    self._bars_record(contract, Status.SKIPPED, error_message="already OK for this window")
            if session is not None and not self.options.dry_run:
                self._execute([r for p in plans if not p.error for r in p.requests], session)
        finally:
            if session is not None:
                self.report.gateway = session.stats
                session.close()

    def _load(self, entries: Sequence[UniverseEntry]) -> dict[str, tuple[UniverseEntry, Path, tuple[OptionContract, ...]]]:
        """Each symbol's latest cache; a missing or malformed one is a symbol-level ERR."""
        loaded = {}
        for entry in entries:
            try:
                path, contracts = read_latest_cache(self.paths.cache_dir, entry.symbol)
            except ContractsCacheError as exc:
                self.symbol_error(entry.symbol, str(exc))
                continue
            self.recorder.outcome(entry.symbol).cache_path = str(path)
            loaded[entry.symbol] = (entry, path, contracts)
        return loaded

    def _plan(self, symbol: str, cached: tuple[UniverseEntry, Path, tuple[OptionContract, ...]],
              reference: tuple[float | None, str] | None) -> SymbolPlan:
        """Read what the pure planner needs (the symbol's state file, the held contracts' terms, the
        stored files' footers) and plan (ibkr_plan)."""
        assert self.spec is not None
        _, path, contracts = cached
        plan = SymbolPlan(symbol, path, cache_day(path))
        if reference is not None:
            plan.reference_price, plan.reference_source = reference
            if plan.reference_price is None:
                plan.error = plan.reference_source
                return plan
        status = self.recorder.status(symbol)
        listed = {c.conid for c in contracts}
        held_ids = [c for c in status.held(self.now, self.expiry) if c not in listed]
        held = tuple(find_contracts(self.paths.cache_dir, symbol, held_ids).values()) if held_ids else ()
        only = (self.options.only_conids or {}).get(symbol)
        if not served(contracts, self.now, self.expiry) and not held:
            plan.error = f"{path}: every contract has expired; run the contracts stage"
            return plan
        plan.chosen = choose_contracts(self.stage, contracts, held, self.now, self.expiry, self.subset,
                                       plan.reference_price, self.options.capture, only)
        plan.held = sum(1 for c in plan.chosen if c.conid not in listed)
        done = set() if self.options.force else status.ok_conids(self.window)
        extents = {}
        for contract in plan.chosen:
            extents[contract.conid] = extent = stored_extent(self._target(contract))
            if contract.conid in done and extent.broken:
                log.warning("%s: OK in an earlier run but now unreadable (%s): fetching it again",
                            self._target(contract), extent.broken)
        plan.requests, plan.skipped = plan_requests(plan.chosen, self.spec, done, extents, self.now,
                                                    self.options.incremental, self.options.overlap, self._target)
        return plan

    def _execute(self, requests: Sequence[PlannedRequest], session: IBGatewaySession) -> None:
        """Request every planned contract and store each answer, in request order, in this thread."""
        assert self.spec is not None
        queries = [(r.contract, BarQuery(replace(self.spec, duration=r.duration), self.options.end))
                   for r in requests]
        for request, result in zip(requests, session.fetch_all(queries), strict=True):
            self._store(request, result)

    def _target(self, contract: OptionContract) -> Path:
        assert self.spec is not None
        return bar_path(self.paths.data_root, self.paths.scope, contract.symbol, contract.conid, self.spec.what,
                        self.spec.bar_size)

    def _store(self, request: PlannedRequest, result: BarFetch) -> None:
        """Merge one answer into its Parquet file (under the file's lock) and record the outcome."""
        contract = request.contract
        common = {"duration": request.duration, "elapsed_s": result.elapsed_s, "attempts": result.attempts}
        if result.status is not Status.OK:
            self._bars_record(contract, result.status, error_code=result.error_code,
                              error_message=_explain(contract, result, self.now), **common)
            return
        try:
            stored = merge_into(request.target, result.bars, self.options.incremental)
        except Exception as exc:  # one contract's local failure (disk, file system) must not end the run
            log.exception("%s %s: storing bars failed", contract.symbol, contract.conid)
            self._bars_record(contract, Status.ERR, error_message=f"store failed: {type(exc).__name__}: {exc}",
                              **common)
            return
        notes = [request.note] if request.note else []
        if stored.quarantined is not None:
            notes.append(f"unreadable file moved aside to {stored.quarantined}: {stored.quarantine_reason}")
            log.warning("%s", notes[-1])
        if stored.legacy:
            notes.append(f"earlier-system file merged ({stored.rows_before} bars kept, columns mapped)")
        self._bars_record(contract, Status.OK, bars=result.bars.height, first=result.first, last=result.last,
                          output_path=str(request.target), error_message="; ".join(notes) or None, **common)

    def _bars_record(self, contract: OptionContract, status: Status, duration: str | None = None,
                     **fields: object) -> None:
        assert self.spec is not None
        self.record("bars", contract.symbol, status, conid=contract.conid, bar_size=self.spec.bar_size,
                    what=self.spec.what, duration=duration or self.spec.duration, expiry=contract.expiry, **fields)

    def _reference_prices(
        self, session: IBGatewaySession | None,
        loaded: Mapping[str, tuple[UniverseEntry, Path, tuple[OptionContract, ...]]],
    ) -> dict[str, tuple[float | None, str]]:
        """Each symbol's last completed daily close (`1 day` TRADES over `5 D`; today's unfinished
        bar excluded), else the median strike of its served chain (the documented fallback), or with
        `require_close` (--no-skip-underlying-close) no price and the reason, which fails the symbol."""
        out: dict[str, tuple[float | None, str]] = {}
        closes: dict[str, float | None] = {}
        if session is not None:
            query = BarQuery(REFERENCE_SPEC, self.options.end)
            symbols = list(loaded)
            stocks = [(StockRef(loaded[s][0].symbol, loaded[s][0].conid), query) for s in symbols]
            for symbol, result in zip(symbols, session.fetch_all(stocks), strict=True):
                spec = query.spec
                if not self.options.dry_run:
                    self.record("reference", symbol, result.status, conid=loaded[symbol][0].conid,
                                bar_size=spec.bar_size, what=spec.what, duration=spec.duration,
                                bars=result.bars.height, first=result.first, last=result.last,
                                error_code=result.error_code, error_message=result.error_message,
                                elapsed_s=result.elapsed_s, attempts=result.attempts)
                closes[symbol] = completed_close(result, self.options.end or self.now)
        for symbol, (_, _, contracts) in loaded.items():
            close = closes.get(symbol)
            live = served(contracts, self.now, self.expiry)
            if close is not None:
                out[symbol] = (close, CLOSE_SOURCE)
            elif self.options.require_close:
                why = "gateway unreachable (dry run)" if session is None else "IB returned no completed daily close"
                out[symbol] = (None, f"no underlying close ({why}) and --no-skip-underlying-close")
            elif live:
                note = " (dry run without the gateway: a real run may centre elsewhere)" if session is None else ""
                out[symbol] = (median_strike(live), FALLBACK_SOURCE + note)
        return out


def _explain(contract: OptionContract, result: BarFetch, now: datetime) -> str | None:
    """The error text, with what an error 200 means for an option at or past its expiry day."""
    if result.error_code == 200 and now.astimezone(NEW_YORK).date() >= contract.expiry:
        return f"{result.error_message} (IB no longer serves the option: it expired on {contract.expiry})"
    return result.error_message


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


def cache_day(path: Path) -> date | None:
    """The trade date of a cache file `{SYMBOL}_{YYYY-MM-DD}.json`."""
    try:
        return date.fromisoformat(path.stem.rsplit("_", 1)[-1])
    except ValueError:
        return None
