"""What the demo prints while a Dagster run works: one line per variety and asset (partitions done of
total, rows, elapsed) from the run's materializations. Dagster's own log lines stay in the instance
(the UI shows them); the console gets warnings and errors only."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

import dagster as dg

# Run config of every demo run: the console logger shows warnings and errors, not Dagster's DEBUG events.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WATCH_TAG = "ghtrader/demo_watch"  # finds the run while dg.materialize still holds it
POLL_S = 1.0


@dataclass
class AssetTally:
    """Partitions materialized and the sum of their `rows` metadata."""

    done: int = 0
    rows: int = 0


def tally(materializations: Iterable[dg.AssetMaterialization], assets: Sequence[str]) -> dict[str, AssetTally]:
    """Tallies of `assets` (names) from a run's materializations; other assets are ignored."""
    tallies = {name: AssetTally() for name in assets}
    for materialization in materializations:
        found = tallies.get(materialization.asset_key.to_user_string())
        if found is None:
            continue
        found.done += 1
        rows = materialization.metadata.get("rows")
        found.rows += int(rows.value) if isinstance(rows, dg.IntMetadataValue) and rows.value is not None else 0
    return tallies


def progress_line(label: str, asset: str, counted: AssetTally, total: int, elapsed_s: float) -> str:
    """`  SHFE.cu   main_l5            40/40 days     1,234,567 rows    12.3s`."""
    return f"  {label:9} {asset:17} {counted.done:>4}/{total} days {counted.rows:>13,} rows {elapsed_s:7.1f}s"


def result_lines(result: dg.ExecuteInProcessResult, label: str, assets: Sequence[str], total: int,
                 elapsed_s: float) -> list[str]:
    """The final line of each asset of a finished run."""
    events = [e.materialization for e in result.get_asset_materialization_events()]
    return [progress_line(label, name, counted, total, elapsed_s) for name, counted in tally(events, assets).items()]


def _run_materializations(instance: dg.DagsterInstance, token: str) -> list[dg.AssetMaterialization]:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={WATCH_TAG: token}), limit=1)
    if not runs:
        return []
    entries = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return [e.asset_materialization for e in entries if e.asset_materialization is not None]


@contextmanager
def live_line(instance: dg.DagsterInstance, token: str, label: str, assets: Sequence[str], total: int,
              out: TextIO | None = None) -> Iterator[None]:
    """While the block runs, rewrite one line with the run's progress every POLL_S seconds (terminal
    only; a log or a pipe gets the final lines alone). The run must carry the tag WATCH_TAG=token."""
    out = out or sys.stdout
    if not out.isatty():
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not stop.wait(POLL_S):
            try:
                counted = tally(_run_materializations(instance, token), assets)
            except Exception:  # noqa: BLE001 - a display must never fail the demo; the next poll retries
                continue
            parts = "  ".join(f"{name} {c.done}/{total}" for name, c in counted.items())
            out.write(f"\r  {label:9} {parts}  ({time.monotonic() - started:.0f}s)\x1b[K")
            out.flush()

    thread = threading.Thread(target=watch, name="demo-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        out.write("\r\x1b[K")
        out.flush()
