"""Benchmark: the cost of re-materializing one (contract, day) in QuestDB, measured in one run.

    .venv/bin/python bench/bench_rewrite.py [--rows 30000] [--repeat 20]

Prints, per operation, the median seconds over `repeat` tries:
- identical re-ingest (the common path) with the current store (`replace_raw_day`: write, one WAL barrier,
  one count) and with the previous release's sequence for the same case (barrier + count, write,
  barrier + count, barrier), reproduced here with the same client;
- a shorter answer (the stale-row path): current store (write, count, one UPDATE, count);
- the bare ceiling: one `QuestDBClient.write` of the frame (ILP flush) and one WAL barrier.
A day of SHFE.cu in the simulator is about 27,000 ticks; the default frame is that size.
"""

from __future__ import annotations

import _harness  # first: the project root on sys.path
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from ghtrader_assets.domain.schedule import ScheduleRow
from ghtrader_assets.domain.symbols import variety_of
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import RAW_TICKS
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets_tests.reliability.rewrite_worker import CAL, tick_frame

DAY = CAL.days[10]


def median_s(repeat: int, call) -> float:  # noqa: ANN001
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def store_raw(qdb: QuestDBClient, contract: str, day, bounds: tuple[int, int], frame: pl.DataFrame) -> None:
    """One (contract, day) through the store's batch path, raw only (what a download of that day does)."""
    write = store.DayWrite(variety_of(contract), day, bounds, ScheduleRow(day, contract, -1, 0), frame)
    done = store.store_days(qdb, [write], main_l5=False)[(write.variety, day)]
    if done.error:
        raise RuntimeError(done.error)


def main() -> int:
    _harness.stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    server = QuestDBServer(home=Path(tempfile.mkdtemp(prefix="bench-qdb-")), ports=ServerPorts.free()).start()
    try:
        settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg)
        bounds = CAL.bounds_ns(DAY)
        with QuestDBClient(settings) as qdb:
            qdb.bootstrap()
            contract = "SHFE.cu2505"
            frame = tick_frame(contract, DAY, args.rows, variant=0)
            store_raw(qdb, contract, DAY, bounds, frame)
            with_answer = frame.with_columns(
                pl.lit(int(qdb.scalar(f"SELECT min(answer_hash) FROM {RAW_TICKS.name} WHERE symbol = '{contract}'")))
                .alias("answer_hash"))
            where = store.day_filter(contract, DAY, bounds)

            def previous_release(_: int) -> None:
                # the sequence the partition-rebuild store ran for an identical answer
                qdb.wait_for_wal(RAW_TICKS)
                had = int(qdb.scalar(f"SELECT count() FROM {RAW_TICKS.name} WHERE {where}")) > 0
                qdb.write(RAW_TICKS, with_answer)
                if had:
                    qdb.wait_for_wal(RAW_TICKS)
                    qdb.scalar(f"SELECT count() FROM {RAW_TICKS.name} WHERE {where}")
                qdb.wait_for_wal(RAW_TICKS)

            # interleaved, so a machine busy with other work slows all three alike
            runs: dict[str, list[float]] = {"current": [], "previous": [], "ceiling": []}
            calls = {"current": lambda: store_raw(qdb, contract, DAY, bounds, frame),
                     "previous": lambda: previous_release(0),
                     "ceiling": lambda: (qdb.write(RAW_TICKS, with_answer), qdb.wait_for_wal(RAW_TICKS))}
            for _ in range(args.repeat):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    runs[name].append(time.perf_counter() - started)
            current, before, ceiling = (statistics.median(runs[k]) for k in ("current", "previous", "ceiling"))
            variants = [tick_frame(contract, DAY, args.rows - (1 + i % 2) * args.rows // 10, variant=1 + i)
                        for i in range(args.repeat)]
            stale = median_s(args.repeat, lambda i: store_raw(qdb, contract, DAY, bounds, variants[i]))
            retired = store.retired_rows(qdb, RAW_TICKS, contract)
    finally:
        server.stop()
    print(f"rows per day: {args.rows}, tries: {args.repeat} (median seconds)")
    print(f"identical re-ingest, current store:        {current:.4f} s")
    print(f"identical re-ingest, previous release:     {before:.4f} s  (current / previous = {current / before:.2f})")
    print(f"bare write of the frame (ceiling):         {ceiling:.4f} s  (current / ceiling = {current / ceiling:.2f})")
    print(f"shorter answer (retire by UPDATE):         {stale:.4f} s  ({retired} rows retired in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
