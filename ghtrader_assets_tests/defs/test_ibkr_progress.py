"""The IBKR CLI progress bar: counted from the summary records, drawn only on a terminal."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.domain.run_summary import Status, SummaryRecord
from ghtrader_assets.ibkr_cli import show_progress
from ghtrader_assets.ibkr_progress import StageProgress, progress_bar
from ghtrader_assets.ibkr_stages import StageReport, SymbolOutcome
from ghtrader_assets.sim.ib import GatewaySim
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

BAR_GLYPHS = ("━", "\x1b[", "req/s", "ETA")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(progress: StageProgress, report: StageReport, symbol: str, status: Status, purpose: str = "bars") -> None:
    report.symbols.setdefault(symbol, SymbolOutcome(symbol)).counts[str(status)] += 1
    progress(SummaryRecord("run", "hours", purpose, symbol, "w", status), report)  # type: ignore[arg-type]


def report(**planned: int) -> StageReport:
    return StageReport("hours", "run", Path("summary.jsonl"),
                       symbols={s: SymbolOutcome(s, planned=n) for s, n in planned.items()})


def test_counts_rate_and_eta_from_the_records() -> None:
    clock = Clock()
    progress = StageProgress("hours", clock=clock)
    run = report(AAPL=6, MSFT=2)  # MSFT planned, nothing recorded yet: counted in the total
    feed(progress, run, "AAPL", Status.SKIPPED)  # a skip is done without a request
    for status in (Status.OK, Status.OK, Status.EMPTY):
        clock.now += 1.0
        feed(progress, run, "AAPL", status)
    feed(progress, run, "SPY", Status.ERR, purpose="symbol")  # a symbol-level error: one of one, no request
    assert (progress.done(), progress.total()) == (5, 10)
    assert progress.counts() == {"OK": 2, "EMPTY": 1, "ERR": 1, "SKIPPED": 1}
    assert progress.requests == 3
    # 3 requests in 3 s; 5 contracts left at 3 s per 4 fetched: 3.75 s
    assert progress.status_text() == "OK=2 EMPTY=1 ERR=1 SKIP=1  1.0 req/s  ETA 0:04"
    assert progress.symbol_line("AAPL") == "hours AAPL: 4/7 OK=2 EMPTY=1 ERR=0 SKIP=1 (3.0s)"
    assert progress.symbol_line("SPY") == "hours SPY: 1/1 OK=0 EMPTY=0 ERR=1 SKIP=0 (3.0s)"


def test_bar_on_a_forced_terminal_shows_counts_and_rate() -> None:
    out = io.StringIO()
    with progress_bar("hours", Console(file=out, force_terminal=True, width=160)) as progress:
        run = report(AAPL=4)
        for status in (Status.OK, Status.OK, Status.EMPTY):
            feed(progress, run, "AAPL", status)
    drawn = out.getvalue()
    assert "3/4" in drawn and "OK=2 EMPTY=1 ERR=0 SKIP=0" in drawn and "req/s" in drawn and "ETA" in drawn


def test_no_bar_without_a_terminal_or_with_json(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not show_progress(False)  # pytest's captured streams are no terminal
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert show_progress(False) and not show_progress(True)
    monkeypatch.undo()
    sim = ib_gateway_factory(symbols=("SPY",), weekly_expiries=1, monthly_expiries=1)
    common = ["--symbols", "SPY", "--host", sim.host, "--port", str(sim.port), "--msg-rate", "0", "--rate", "500",
              "--data-root", str(tmp_path / "raw"), "--state-dir", str(tmp_path / "state"), "--end",
              SIM_AS_OF.isoformat()]
    assert cli_main(["ibkr", "contracts", *common]) == 0
    assert cli_main(["ibkr", "hours", *common]) == 0
    captured = capsys.readouterr()
    assert "hours SPY: OK=" in captured.out
    for glyph in BAR_GLYPHS:
        assert glyph not in captured.out and glyph not in captured.err, glyph
