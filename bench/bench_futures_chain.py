"""Benchmark: one simulated year of SHFE.cu through the futures chain, against the raw library ceiling.

    .venv/bin/python bench/bench_futures_chain.py [--start 2024-01-02 --end 2024-12-31 --density 0.25]

Starts its own QuestDB (free ports, temp dir) and the TqSdk simulator in a separate process, then in one run:
  1. chain: a single-run Dagster backfill of underlying_ticks + main_l5 + day_index over every day;
  2. direct: the same days through the same chain functions without Dagster (Dagster overhead = 1 - direct/chain);
  3. ceiling: the same frames (ticks with row hash) written with a bare `Sender.dataframe` loop;
  4. read-back: the year of main_l5 through `ghtrader_assets.reader.read_ticks`.
Prints rows/s and the ratios. Nothing here is asserted: figures only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
from questdb import Sender

from ghtrader_assets import futures_chain as chain
from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.domain.sessions import Sessions
from ghtrader_assets.domain.ticks import with_row_hash, with_seq
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import RAW_TICKS, Table
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings
from ghtrader_assets.reader import read_ticks

VARIETY = "SHFE.cu"


def start_simulator(start: date, end: date, density: float) -> tuple[subprocess.Popen, dict[str, str]]:
    """The simulator in its own process, so its JSON encoding does not share our GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ghtrader_assets.sim.tq", "--port", "0", "--start", str(start), "--end", str(end),
         "--density", str(density), "--varieties", VARIETY],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    env: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(env) < 4 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.match(r"export (\w+)=(\S+)", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    if len(env) < 4:
        proc.kill()
        raise SystemExit("the TqSdk simulator did not start")
    return proc, env


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 2))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2024, 12, 31))
    parser.add_argument("--density", type=float, default=0.25)
    args = parser.parse_args()

    sim, sim_env = start_simulator(args.start, args.end, args.density)
    os.environ.update(sim_env)
    server = QuestDBServer(home=Path(tempfile.mkdtemp(prefix="bench-qdb-")), ports=ServerPorts.free()).start()
    settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg)
    now = datetime.combine(args.end, datetime.min.time()).replace(hour=17, tzinfo=CST) + timedelta(days=1)
    try:
        resources = {
            "questdb": QuestDBResource(http_port=settings.http_port, pg_port=settings.pg_port),
            "tqsdk": TqSdkResource(user="sim", password="sim"),
            "futures": FuturesSettings(start_date=str(args.start), now=now.isoformat(), schedule_source="continuous_table"),
        }
        assets = build_futures_assets((VARIETY,))
        instance = dg.DagsterInstance.ephemeral()
        dg.materialize(assets, selection=["trading_days"], resources=resources, instance=instance)
        dg.materialize(assets, selection=["main_schedule"], partition_key=VARIETY, resources=resources, instance=instance)
        days = [date.fromisoformat(k) for k in instance.get_dynamic_partitions("trading_day")]
        days = [d for d in days if d <= args.end]
        print(f"SHFE.cu, {len(days)} trading days {days[0]}..{days[-1]}, density {args.density}")

        # 1. the chain as a single-run backfill
        tags = {"dagster/asset_partition_range_start": f"{days[0]}|{VARIETY}",
                "dagster/asset_partition_range_end": f"{days[-1]}|{VARIETY}"}
        result, chain_s = timed(dg.materialize, assets, selection=["underlying_ticks", "main_l5", "day_index"],
                                resources=resources, instance=instance, tags=tags)
        assert result.success
        with QuestDBClient(settings) as qdb:
            raw_rows = int(qdb.scalar(f"SELECT count() FROM {RAW_TICKS.name}"))
            main_rows = int(qdb.scalar("SELECT count() FROM ghtrader_ticks_main_l5_v2"))
            index_rows = int(qdb.scalar("SELECT count() FROM ghtrader_symbol_day_index_v2"))
        chain_rows = raw_rows + main_rows + index_rows

        # 2. the same work without Dagster; also collect the frames for the ceiling and time the download
        frames: list[pl.DataFrame] = []
        download_s = 0.0
        with QuestDBClient(settings) as qdb, TqSdkClient(TqSettings("sim", "sim")) as tq:
            calendar = store.read_calendar(qdb)
            schedule = {r.trading_day: r for r in store.read_schedule(qdb, VARIETY)}
            sessions = Sessions.parse(tq.quote_info(f"KQ.m@{VARIETY}")["trading_time"])
            started = time.perf_counter()
            for day in days:
                row = schedule[day]
                result_day = chain.DayResult(VARIETY, day, row.main_contract, row.segment_id, True)
                chain.fetch_underlying_day(tq, qdb, calendar, sessions, row, VARIETY, day, result_day, set())
                chain.build_main_l5_day(qdb, calendar, row, VARIETY, day, result_day)
                chain.index_day(qdb, calendar, row, VARIETY, day, result_day)
            direct_s = time.perf_counter() - started
            for day in days:
                frame, seconds = timed(tq.ticks, schedule[day].main_contract, day)
                download_s += seconds
                frames.append(with_seq(with_row_hash(frame)).with_columns(
                    pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
                    pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day")).select(store.RAW_FRAME_COLUMNS))

        # 3. the ceiling: bare Sender.dataframe, same frames, into an identical table
        ceiling = Table("bench_ceiling_ticks", RAW_TICKS.columns, RAW_TICKS.dedup_keys)
        with QuestDBClient(settings) as qdb:
            qdb.bootstrap([ceiling])
            pdfs = [f.to_pandas(use_pyarrow_extension_array=True) for f in frames]
            started = time.perf_counter()
            with Sender.from_conf(f"http::addr=127.0.0.1:{settings.http_port};auto_flush=off;") as sender:
                for pdf in pdfs:
                    sender.dataframe(pdf, table_name=ceiling.name, symbols=["symbol"], at="ts")
                    sender.flush()
            qdb.wait_for_wal(ceiling)
            ceiling_s = time.perf_counter() - started
        ceiling_rows = sum(f.height for f in frames)

        # 4. read-back
        back, read_s = timed(read_ticks, f"KQ.m@{VARIETY}", days[0], days[-1], settings=settings)
    finally:
        server.stop()
        os.killpg(sim.pid, 15)

    chain_rps = chain_rows / chain_s
    ceiling_rps = ceiling_rows / ceiling_s
    store_s = max(direct_s - download_s, 1e-9)
    print(f"rows written by the chain   {chain_rows:>12,}  (raw {raw_rows:,} + main_l5 {main_rows:,} + index {index_rows:,})")
    print(f"chain (Dagster backfill)    {chain_s:>10.1f} s  {chain_rps:>12,.0f} rows/s")
    print(f"  of which TqSdk download   {download_s:>10.1f} s  ({download_s / direct_s:.0%} of the work without Dagster)")
    print(f"chain without Dagster       {direct_s:>10.1f} s")
    print(f"bare Sender.dataframe       {ceiling_s:>10.1f} s  {ceiling_rps:>12,.0f} rows/s  ({ceiling_rows:,} rows)")
    print(f"read-back (read_ticks)      {read_s:>10.1f} s  {back.height / read_s:>12,.0f} rows/s  ({back.height:,} rows)")
    print("ratios")
    print(f"  chain rows/s / ceiling rows/s                     {chain_rps / ceiling_rps:.3f}")
    print(f"  chain rows/s excluding the download / ceiling     {chain_rows / store_s / ceiling_rps:.3f}")
    print(f"  Dagster overhead share of the backfill wall time  {max(0.0, 1 - direct_s / chain_s):.3f}")
    print(f"  read-back rows/s / ceiling write rows/s           {back.height / read_s / ceiling_rps:.3f}")


if __name__ == "__main__":
    main()
