"""What every benchmark shares: the project root on sys.path (benchmarks reuse the tests' helpers), and the
servers a benchmark starts stopped when it is told to stop.

A benchmark killed by a timeout (SIGTERM) or Ctrl-C (SIGINT) would otherwise leave its QuestDB server (its own
process group) and simulators running, holding the caller's output pipe: `stop_on_signals` turns both
signals into SystemExit, so every `finally` and context manager of the benchmark runs."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def stop_on_signals() -> None:
    def stop(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
