"""Progress of one IBKR stage run, counted from its summary records as they are written: contracts
done of planned, counts by status, gateway request rate and ETA; shown as a rich bar on a terminal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ghtrader_assets.domain.run_summary import Status, SummaryRecord
from ghtrader_assets.ibkr_stages import StageReport, SymbolOutcome

SHORT = {"OK": "OK", "EMPTY": "EMPTY", "ERR": "ERR", "SKIPPED": "SKIP"}  # status -> label on the bar


@dataclass
class StageProgress:
    """Listener of StageRun (called once per summary record, from the session's threads), reading the
    report's outcomes. A symbol's total is its planned requests plus its skips (a symbol-level error
    counts as one); `requests` are gateway requests (a discovery counts the requests it took)."""

    stage: str
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[StageProgress], None] | None = None
    requests: int = 0
    started: float = field(init=False)
    _outcomes: dict[str, SymbolOutcome] = field(default_factory=dict, init=False)
    _last_s: dict[str, float] = field(default_factory=dict, init=False)  # symbol -> its latest record, s
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def __call__(self, record: SummaryRecord, report: StageReport) -> None:
        with self._lock:
            self._outcomes = report.symbols
            self._last_s[record.symbol] = self.elapsed_s
            if record.purpose != "symbol" and record.status is not Status.SKIPPED:
                self.requests += record.requests or 1
        if self.on_change is not None:
            self.on_change(self)

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def done(self, symbol: str | None = None) -> int:
        return sum(sum(o.counts.values()) for o in self._chosen(symbol))

    def total(self, symbol: str | None = None) -> int:
        return sum(max(o.planned + o.counts["SKIPPED"], sum(o.counts.values())) for o in self._chosen(symbol))

    def counts(self, symbol: str | None = None) -> dict[str, int]:
        totals = {status: 0 for status in SHORT}
        for outcome in self._chosen(symbol):
            for status, n in outcome.counts.items():
                totals[status] += n
        return totals

    def status_text(self) -> str:
        """Counts by status, request rate and ETA: `OK=12 EMPTY=1 ERR=0 SKIP=3  8.2 req/s  ETA 0:41`."""
        elapsed = self.elapsed_s
        rate = self.requests / elapsed if elapsed > 0 else 0.0
        fetched = self.done() - self.counts()["SKIPPED"]
        left = self.total() - self.done()
        eta = "-" if not fetched or not left else _clock_text(left * elapsed / fetched)
        return f"{_counts_text(self.counts())}  {rate:.1f} req/s  ETA {eta}"

    def symbol_line(self, symbol: str) -> str:
        """One line: `hours AAPL: 120/124 OK=118 EMPTY=2 ERR=0 SKIP=0 (3.2s)`."""
        return (f"{self.stage} {symbol}: {self.done(symbol)}/{self.total(symbol)} "
                f"{_counts_text(self.counts(symbol))} ({self._last_s.get(symbol, 0.0):.1f}s)")

    def symbols(self) -> list[str]:
        return list(self._outcomes)

    def _chosen(self, symbol: str | None) -> list[SymbolOutcome]:
        return list(self._outcomes.values()) if symbol is None else [self._outcomes[symbol]]


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{SHORT[status]}={n}" for status, n in counts.items())


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


@contextmanager
def progress_bar(stage: str, console: Console | None = None) -> Iterator[StageProgress]:
    """A StageProgress drawn as a bar on `console` (default: stderr) while the block runs; the bar is
    removed at the end, the caller prints the report."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                   console=console or Console(stderr=True), transient=True)
    task = bar.add_task(stage, total=None, status="")

    def redraw(progress: StageProgress) -> None:
        bar.update(task, completed=progress.done(), total=progress.total() or None, status=progress.status_text())

    with bar:
        yield StageProgress(stage, on_change=redraw)
