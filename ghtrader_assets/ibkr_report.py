"""The report of an IBKR stage run: outcomes per symbol, and the recorder that writes the summary and the state."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ghtrader_assets.domain.expiry import Coverage, ExpiryRule
from ghtrader_assets.domain.latest_status import SymbolStatus, apply
from ghtrader_assets.domain.outcome_check import OutcomeCheck, OutcomeThresholds, check_outcome
from ghtrader_assets.domain.run_summary import Stage, Status, SummaryRecord, count_by_status
from ghtrader_assets.ibkr_plan import SymbolPlan
from ghtrader_assets.io.ib_gateway import GatewayStats
from ghtrader_assets.io.ibkr_state import SummaryWriter, read_status, write_status


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
    coverage: Coverage | None = None
    plan: SymbolPlan | None = None

    def line(self) -> str:
        """One log line."""
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        text = f"{self.symbol}: {counts} requests={self.requests} bars={self.bars}"
        if self.candidates:
            text += f" candidates={self.candidates} discovery_requests={self.discovery_requests} " \
                    f"discovery={self.discovery_s:.1f}s"
        if self.reference_price is not None:
            text += f" ref={self.reference_price:g} ({self.reference_source})"
        if self.coverage is not None and self.coverage.expired:
            text += f" truncated_by_expiry={self.coverage.truncated}/{self.coverage.expired}" \
                    f" lost_sessions={self.coverage.lost_sessions}"
        if self.check is not None and not self.check.passed:
            text += f" check failed: {self.check.message}"
        return text + (f" error: {self.error}" if self.error else "")


@dataclass
class StageReport:
    """Result of one stage run over a list of symbols."""

    stage: Stage
    run_id: str
    summary_path: Path | None  # None for a dry run: nothing is written
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
    def coverage(self) -> Coverage:
        """Expiry coverage summed over the symbols run."""
        total = Coverage()
        for outcome in self.symbols.values():
            total = total + (outcome.coverage or Coverage())
        return total

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


# Told of every summary record once it is counted, with the report so far (progress displays), in the stage's thread.
Listener = Callable[[SummaryRecord, StageReport], None]


class Recorder:
    """Writes summary records (the audit log), folds them into the per-symbol latest status (the
    state resume and rerun read, rewritten after each record) and into per-symbol outcomes. Used
    from the stage's thread only."""

    def __init__(self, report: StageReport, state_dir: Path, listener: Listener | None = None) -> None:
        self.report = report
        self.state_dir = state_dir
        self.listener = listener
        self.writer = None if report.summary_path is None else SummaryWriter(report.summary_path)
        self._status: dict[str, SymbolStatus] = {}

    def status(self, symbol: str) -> SymbolStatus:
        """The symbol's latest status in this stage (read once per run)."""
        if symbol not in self._status:
            self._status[symbol] = read_status(self.state_dir, self.report.stage, symbol)
        return self._status[symbol]

    def outcome(self, symbol: str) -> SymbolOutcome:
        return self.report.symbols.setdefault(symbol, SymbolOutcome(symbol))

    def add(self, record: SummaryRecord) -> None:
        if self.writer is not None:
            self.writer.write(record)
            state = self.status(record.symbol)
            if apply(state, record):
                write_status(self.state_dir, state)
        if record.purpose == "coverage":
            return
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
        if self.listener is not None:
            self.listener(record, self.report)

    def finish(self, window: str, thresholds: OutcomeThresholds, now: datetime, rule: ExpiryRule) -> None:
        """Latest counts of the window, the expiry coverage (recorded as a `coverage` record) and the
        outcome check of every symbol run. The check judges the symbol's latest status over every
        contract attempted in this window (a rerun of three failures is judged with the contracts
        that were OK before); a dry run judges its own counts."""
        for symbol, outcome in self.report.symbols.items():
            status = self.status(symbol)
            outcome.latest = status.counts(window)
            outcome.coverage = status.coverage(now, rule)
            if self.writer is not None and outcome.coverage.followed:
                cov = outcome.coverage
                self.writer.write(SummaryRecord(self.report.run_id, self.report.stage, "coverage", symbol, window,
                                                Status.OK if not cov.truncated else Status.ERR, bars=cov.truncated,
                                                requests=cov.lost_sessions, error_message=cov.text()))
            counts = outcome.counts if self.report.dry_run else outcome.latest
            if outcome.error is None:
                outcome.check = check_outcome(counts, thresholds)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
