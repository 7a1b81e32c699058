"""Benchmark: the futures chain against the TqSdk download it waits for and the raw QuestDB write ceiling.

    .venv/bin/python bench/bench_futures_chain.py --quick     # about 60 trading days of SHFE.cu (~8 min)
    .venv/bin/python bench/bench_futures_chain.py             # also the full year, 242 days (~30 min)

Starts its own QuestDB (free ports, temp dir) and TqSdk simulators, each in its own process, and measures
in one run (every chain run in a fresh process, on emptied tables):
  1. download alone: the scheduled days through the same client, nothing stored;
  2. the chain (a single-run Dagster backfill of underlying_ticks + main_l5 + day_index), and its wall
     time over the download-alone wall time;
  3. the store path alone on pre-fetched frames (the chain's own code, the downloads replaced by the
     frames of step 1): rows/s (raw + main_l5) over a bare `Sender.dataframe` loop's rows/s;
  4. the Dagster overhead share: 1 - (the same days through `futures.pipeline.run_days` without Dagster) /
     (the Dagster run), at 60 days and, without --quick, 240; and Dagster's own cost per partition, with
     `run_days` replaced by ready outcomes (what the run's events cost, free of download noise);
  5. two varieties in two parallel runs (each with its own simulator): aggregate rows/s over one variety's,
     with the CPU seconds of each process (run, simulator, QuestDB) to say where the time goes;
  6. the run process's peak RSS at each length;
  7. the read API's rows/s (`reader.read_ticks` of the main series).
The Dagster runs use the project's own instance (dagster.yaml: SQLite storage in a temp DAGSTER_HOME), the
storage a one-machine user has. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import questdb_schema as schema
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import RAW_TICKS, Table
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts

START = date(2024, 1, 2)
QUICK_END, FULL_END = date(2024, 3, 29), date(2024, 12, 31)
VARIETIES = ("SHFE.cu", "SHFE.rb")
NOW = datetime.combine(FULL_END, datetime.min.time()).replace(hour=17, tzinfo=CST) + timedelta(days=1)  # all final
TABLES = (store.RAW_TICKS, store.MAIN_L5_TICKS, schema.SYMBOL_DAY_INDEX, schema.NO_DATA_DAYS)


# -- the worker: one measured run in a process of its own -------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    """Runs one role and prints one JSON line: seconds, peak RSS."""
    import dagster as dg

    from ghtrader_assets.defs.futures.assets import build_futures_assets
    from ghtrader_assets.futures import calendar as calendar_step
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.futures import pipeline
    from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
    from ghtrader_assets.defs.resources import QuestDBResource
    from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings

    settings = QuestDBSettings(http_port=args.http, pg_port=args.pg)
    variety, end = args.variety, date.fromisoformat(args.end)
    now = NOW
    resources = {
        "questdb": QuestDBResource(http_port=settings.http_port, pg_port=settings.pg_port),
        "tqsdk": TqSdkResource(user="sim", password="sim"),
        "futures": FuturesSettings(start_date=str(START), now=now.isoformat(), schedule_source="continuous_table"),
    }
    assets = build_futures_assets((variety,))
    instance = dg.DagsterInstance.get()  # DAGSTER_HOME: the project's dagster.yaml (SQLite storage)
    dg.materialize(assets, selection=["trading_days"], resources=resources, instance=instance)
    dg.materialize(assets, selection=["main_schedule"], partition_key=variety, resources=resources, instance=instance)
    days = [d for d in (date.fromisoformat(k) for k in instance.get_dynamic_partitions("trading_day")) if d <= end]
    started = time.perf_counter()
    if args.worker == "dagster":  # the same run with the chain replaced by ready outcomes: Dagster's own cost
        pipeline.run_days = _ready_outcomes
        ledger_step.verify_days = lambda qdb, calendar, variety, days, at=None: ledger_step.VerifyResult(variety, 0, 0, [], 0.0)
    if args.worker in ("chain", "dagster"):
        tags = {"dagster/asset_partition_range_start": f"{days[0]}|{variety}",
                "dagster/asset_partition_range_end": f"{days[-1]}|{variety}"}
        result = dg.materialize(assets, selection=["underlying_ticks", "main_l5", "day_index"], resources=resources,
                                instance=instance, tags=tags)
        ok = result.success
    elif args.worker == "direct":
        with QuestDBClient(settings) as qdb:
            calendar = ledger.read_calendar(qdb)
            histories = calendar_step.session_histories(qdb, [variety], "")
            outcomes = list(pipeline.run_days(lambda: TqSdkClient(TqSettings("sim", "sim")), qdb, calendar,
                                              [(variety, d) for d in days], pipeline.ChainSteps(), histories, now=now))
        ok = not any(o.error for o in outcomes)
    else:  # download: the same client, the same days, nothing stored; the frames are kept for the store run
        with QuestDBClient(settings) as qdb:
            schedule = {r.trading_day: r for r in ledger.read_schedule(qdb, variety)}
        out = Path(args.frames)
        with TqSdkClient(TqSettings("sim", "sim")) as tq:
            frames = {}
            for d in days:
                frames[d] = tq.ticks(schedule[d].main_contract, d)
        seconds = time.perf_counter() - started
        for d, frame in frames.items():
            frame.write_parquet(out / f"{d}.parquet")
        ok = True
        print(json.dumps({"ok": ok, "seconds": seconds, "days": len(days), "rss_mb": _rss_mb(), "cpu_s": _cpu_s()}))
        return
    print(json.dumps({"ok": ok, "seconds": time.perf_counter() - started, "days": len(days), "rss_mb": _rss_mb(),
                      "cpu_s": _cpu_s()}))


def _ready_outcomes(tq_session, qdb, calendar, days, steps, histories, now, max_retries=0, limits=None):
    """Stands in for `pipeline.run_days`: one finished outcome per day, at once, with real-sized stats."""
    from ghtrader_assets.domain.ledger import DayStats
    from ghtrader_assets.futures.pipeline import DayOutcome

    stats = DayStats(rows_total=13_700, first_datetime_ns=1_704_150_000_000_000_000,
                     last_datetime_ns=1_704_200_000_000_000_000, l5_present=True, row_hash_sum=123_456_789)
    for variety, day in days:
        yield DayOutcome(variety, day, contract="SHFE.cu2402", segment_id=0, final=True, raw=stats, main_l5=stats,
                         index=stats)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the parent: servers, runs, figures --------------------------------------------------------------------
def start_simulator(variety: str, end: date, density: float) -> tuple[subprocess.Popen, dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ghtrader_assets.sim.tq", "--port", "0", "--start", str(START), "--end", str(end),
         "--density", str(density), "--varieties", variety],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    env: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(env) < 4 and time.monotonic() < deadline:
        m = re.match(r"export (\w+)=(\S+)", proc.stdout.readline().strip())
        if m:
            env[m.group(1)] = m.group(2)
    if len(env) < 4:
        proc.kill()
        raise SystemExit("the TqSdk simulator did not start")
    return proc, env


class Bench:
    def __init__(self, settings: QuestDBSettings, sims: dict[str, dict[str, str]], dagster_home: Path,
                 cpu_pids: dict[str, int]) -> None:
        self.settings, self.sims, self.dagster_home, self.cpu_pids = settings, sims, dagster_home, cpu_pids

    def launch(self, role: str, variety: str, end: date, frames: str = "") -> subprocess.Popen:
        cmd = [sys.executable, __file__, "--worker", role, "--variety", variety, "--end", str(end),
               "--http", str(self.settings.http_port), "--pg", str(self.settings.pg_port), "--frames", frames]
        log = open(Path(tempfile.gettempdir()) / "bench_futures_chain.worker.log", "a")  # Dagster's own log lines
        env = {**os.environ, **self.sims[variety], "DAGSTER_HOME": str(self.dagster_home)}
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the servers (simulators, QuestDB), by name."""
        return {name: process_cpu_s(pid) for name, pid in self.cpu_pids.items()}

    @staticmethod
    def result(proc: subprocess.Popen) -> dict:
        out, _ = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            raise SystemExit(f"bench worker failed ({proc.returncode}): {out[-2000:]}")
        return json.loads(lines[-1])

    def run(self, role: str, variety: str, end: date, frames: str = "") -> dict:
        before = self.cpu()
        out = self.result(self.launch(role, variety, end, frames))
        out["server_cpu_s"] = {k: v - before[k] for k, v in self.cpu().items()}
        return out

    def empty_tables(self) -> None:
        with QuestDBClient(self.settings) as qdb:
            for table in TABLES:
                qdb.execute(f"TRUNCATE TABLE {table.name}")
                qdb.wait_for_wal(table)

    def rows(self) -> tuple[int, int]:
        with QuestDBClient(self.settings) as qdb:
            return (int(qdb.scalar(f"SELECT count() FROM {store.RAW_TICKS.name}")),
                    int(qdb.scalar(f"SELECT count() FROM {store.MAIN_L5_TICKS.name}")))


def store_alone(bench: Bench, variety: str, frames_dir: Path) -> tuple[float, int]:
    """The chain's own store path (pipeline.run_days) with the downloads served from `frames_dir`."""
    from ghtrader_assets.futures import calendar as calendar_step
    from ghtrader_assets.futures import pipeline

    frames = {date.fromisoformat(p.stem): pl.read_parquet(p) for p in sorted(frames_dir.glob("*.parquet"))}

    class Prefetched:
        def ticks(self, contract: str, day: date) -> pl.DataFrame:
            return frames[day]

        def close(self) -> None:
            pass

    with QuestDBClient(bench.settings) as qdb:
        calendar = ledger.read_calendar(qdb)
        histories = calendar_step.session_histories(qdb, [variety], "")
        started = time.perf_counter()
        outcomes = list(pipeline.run_days(Prefetched, qdb, calendar, [(variety, d) for d in frames], pipeline.ChainSteps(),
                                          histories, now=NOW))
        seconds = time.perf_counter() - started
    assert not any(o.error for o in outcomes), [o.error for o in outcomes if o.error][:3]
    return seconds, sum(bench.rows())


def ceiling(bench: Bench, frames_dir: Path) -> tuple[float, int]:
    """A bare `Sender.dataframe` loop writing the same frames (row hash and keys added beforehand) into an
    identical table, one flush per day, one WAL wait at the end."""
    from questdb import Sender

    from ghtrader_assets.domain.ticks import with_row_hash, with_seq

    table = Table("bench_ceiling_ticks", RAW_TICKS.columns, RAW_TICKS.dedup_keys)
    pdfs = []
    for path in sorted(frames_dir.glob("*.parquet")):
        day = date.fromisoformat(path.stem)
        frame = with_seq(with_row_hash(pl.read_parquet(path))).with_columns(
            pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"),
            pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"), pl.lit(0).alias("answer_hash"))
        pdfs.append(frame.select(RAW_TICKS.column_names).to_pandas(use_pyarrow_extension_array=True))
    with QuestDBClient(bench.settings) as qdb:
        qdb.bootstrap([table])
        started = time.perf_counter()
        with Sender.from_conf(f"http::addr=127.0.0.1:{bench.settings.http_port};auto_flush=off;") as sender:
            for pdf in pdfs:
                sender.dataframe(pdf, table_name=table.name, symbols=["symbol"], at="ts")
                sender.flush()
        qdb.wait_for_wal(table)
        seconds = time.perf_counter() - started
        qdb.execute(f"DROP TABLE {table.name}")
    return seconds, sum(len(p) for p in pdfs)


def _cpu_line(run: dict, wall_s: float) -> str:
    """`run process 80 s, simulator SHFE.cu 60 s, QuestDB 20 s: 1.6 of 2 cores busy over the wall time`."""
    parts = {"run process(es)": run["cpu_s"], **run["server_cpu_s"]}
    busy = sum(parts.values()) / wall_s
    return ", ".join(f"{k} {v:.0f} s" for k, v in parts.items() if v >= 0.5) + \
        f": {busy:.2f} of {os.cpu_count()} cores busy over the {wall_s:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 60 trading days only")
    parser.add_argument("--density", type=float, default=0.25)
    parser.add_argument("--worker", choices=("chain", "dagster", "direct", "download"), help=argparse.SUPPRESS)
    parser.add_argument("--variety", default=VARIETIES[0], help=argparse.SUPPRESS)
    parser.add_argument("--end", default=str(QUICK_END), help=argparse.SUPPRESS)
    parser.add_argument("--http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--frames", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    ends = [QUICK_END] if args.quick else [QUICK_END, FULL_END]
    sim_end = ends[-1]
    procs, sims = [], {}
    for variety in VARIETIES:
        proc, env = start_simulator(variety, sim_end, args.density)
        procs.append(proc)
        sims[variety] = env
    server = QuestDBServer(home=Path(tempfile.mkdtemp(prefix="bench-qdb-")), ports=ServerPorts.free()).start()
    settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg)
    dagster_home = Path(tempfile.mkdtemp(prefix="bench-dagster-home-"))
    shutil.copy(Path(__file__).parents[1] / "dagster.yaml", dagster_home / "dagster.yaml")
    cpu_pids = {"QuestDB": server.pid, **{f"simulator {v}": p.pid for v, p in zip(VARIETIES, procs)}}
    bench = Bench(settings, sims, dagster_home, cpu_pids)
    cu = VARIETIES[0]
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        with QuestDBClient(settings) as qdb:
            qdb.bootstrap()
        say(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; density {args.density}")
        by_length: dict[int, dict] = {}
        for end in ends:
            frames_dir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
            download = bench.run("download", cu, end, str(frames_dir))
            n = download["days"]
            bench.empty_tables()
            direct = bench.run("direct", cu, end)
            bench.empty_tables()
            chain = bench.run("chain", cu, end)
            raw, main = bench.rows()
            dagster_only = bench.run("dagster", cu, end)
            back_started = time.perf_counter()
            from ghtrader_assets.reader import read_ticks

            back = read_ticks(f"KQ.m@{cu}", START, end, settings=settings)
            read_s = time.perf_counter() - back_started
            bench.empty_tables()
            store_s, store_rows = store_alone(bench, cu, frames_dir)
            ceiling_s, ceiling_rows = ceiling(bench, frames_dir)
            by_length[n] = {"download": download, "direct": direct, "chain": chain, "rows": raw + main,
                            "store_s": store_s, "store_rows": store_rows, "ceiling_s": ceiling_s,
                            "ceiling_rows": ceiling_rows, "read_rows": back.height, "read_s": read_s}
            say(f"{cu}, {n} trading days {START}..{end}: {raw:,} raw + {main:,} main_l5 rows")
            ticks = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in frames_dir.glob("*.parquet"))
            say(f"  1. download alone                {download['seconds']:8.1f} s   {ticks / download['seconds']:,.0f} ticks/s")
            say(f"     CPU seconds of the download: {_cpu_line(download, download['seconds'])}")
            say(f"  2. chain (Dagster backfill)      {chain['seconds']:8.1f} s   chain / download = "
                f"{chain['seconds'] / download['seconds']:.3f}   (goal <= 1.15)")
            store_rps, ceiling_rps = store_rows / store_s, ceiling_rows / ceiling_s
            say(f"  3. store alone, pre-fetched      {store_s:8.1f} s   {store_rps:,.0f} rows/s; bare Sender.dataframe "
                f"{ceiling_rps:,.0f} rows/s; ratio {store_rps / ceiling_rps:.3f}   (goal >= 0.5)")
            say(f"  4. without Dagster (run_days)    {direct['seconds']:8.1f} s   Dagster overhead share "
                f"{max(0.0, 1 - direct['seconds'] / chain['seconds']):.3f}   (goal <= 0.05)")
            say(f"     Dagster alone (ready outcomes) {dagster_only['seconds']:7.1f} s   "
                f"{1000 * dagster_only['seconds'] / n:.0f} ms per partition; "
                f"{dagster_only['seconds'] / chain['seconds']:.3f} of the chain run if none of it overlapped")
            say(f"     CPU seconds of the chain run: {_cpu_line(chain, chain['seconds'])}")
            say(f"  6. run process peak RSS          {chain['rss_mb']:8.0f} MiB (without Dagster {direct['rss_mb']:.0f} MiB)")
            say(f"  7. read-back (read_ticks)        {read_s:8.1f} s   {back.height / read_s:,.0f} rows/s")
        # 5. two varieties side by side, each with its own simulator, over the first length
        end = ends[0]
        bench.empty_tables()
        started = time.perf_counter()
        runs = [bench.launch("chain", v, end) for v in VARIETIES]
        before = bench.cpu()
        results = [bench.result(p) for p in runs]
        both_s = time.perf_counter() - started
        servers = {k: v - before[k] for k, v in bench.cpu().items()}
        both_rows = sum(bench.rows())
        first = by_length[min(by_length)]
        one_rps = first["rows"] / first["chain"]["seconds"]
        say(f"  5. {' + '.join(VARIETIES)} in two parallel runs: {both_rows:,} rows in {both_s:.1f} s "
            f"(runs {', '.join(format(r['seconds'], '.1f') for r in results)} s) = {both_rows / both_s:,.0f} rows/s; "
            f"one variety {one_rps:,.0f} rows/s; ratio {both_rows / both_s / one_rps:.3f}   (goal >= 1.5)")
        say(f"     CPU seconds of the two runs: {_cpu_line({'cpu_s': sum(r['cpu_s'] for r in results), 'server_cpu_s': servers}, both_s)}")
    finally:
        server.stop()
        for proc in procs:
            os.killpg(proc.pid, 15)
    density = "" if args.density == parser.get_default("density") else f"_density{args.density:g}"
    out = Path(__file__).parent / "results" / f"futures_chain{'_quick' if args.quick else ''}{density}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
