"""Benchmark: the futures chain against the TqSdk download it waits for and the raw QuestDB write ceiling.

    .venv/bin/python bench/bench_futures_chain.py                     # 58 trading days of SHFE.cu, density 0.25
    .venv/bin/python bench/bench_futures_chain.py --density 1         # the same at a real contract's density
    .venv/bin/python bench/bench_futures_chain.py --days 242 --rounds 1 --no-parallel   # peak RSS over a year

Starts its own QuestDB (free ports, temp dir) and TqSdk simulators, each in its own process, and warms
QuestDB's JVM up with one unmeasured chain run over the first 10 days. Every measured run is a fresh process
on emptied tables. Downloads vary by 20-30 % from one run to the next on these
machines, so the runs whose ratios are taken are interleaved: each round runs the download alone, the
chain through Dagster and the same range through `run_days` without Dagster, in alternating order, and
every ratio is taken within one round; the medians and ranges over the rounds are printed:
  1. download alone: the scheduled days through the chain's own download process, nothing stored;
  2. chain / download alone (goal <= 1.10, median): a single-run Dagster backfill of underlying_ticks +
     main_l5 + day_index over the same days;
  3. store alone / bare write (goal >= 0.8): the chain's store path on pre-fetched frames (the chain's own
     code, the download process serving the frames of step 1) in rows/s (raw + main_l5), over a bare
     `Sender.dataframe` loop writing the same frames into an identical table;
  4. Dagster's share (goal <= 0.05): 1 - run_days without Dagster / the Dagster run; and Dagster's own cost
     per partition with run_days replaced by ready outcomes;
  5. two varieties in two parallel runs (their own simulators and download processes): aggregate rows/s
     over one variety's, with the bound the CPU seconds of every process give on this machine;
  6. peak RSS of the run process and of the download process;
  7. read-back rows/s (`reader.read_ticks` of the main series).
The Dagster runs use the project's own instance (dagster.yaml: SQLite storage in a temp DAGSTER_HOME).
Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import _harness  # before the project's imports: the project root on sys.path
import polars as pl

from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.io import futures_store as store
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io import questdb_schema as schema
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import RAW_TICKS, Table
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets.sim.tq import calendar as sim_calendar

START = date(2024, 1, 2)
VARIETIES = ("SHFE.cu", "SHFE.rb")
TABLES = (store.RAW_TICKS, store.MAIN_L5_TICKS, schema.SYMBOL_DAY_INDEX, schema.NO_DATA_DAYS, schema.DAY_VERIFICATIONS)


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the worker: one measured run in a process of its own -------------------------------------------------
class FramesFromFiles:
    """Serves the frames a download-alone run saved: the store path measured without a download."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def ticks(self, contract: str, day: date) -> pl.DataFrame:
        return pl.read_parquet(self.directory / f"{day}.parquet")

    def close(self) -> None:
        pass


def worker(args: argparse.Namespace) -> None:
    """Runs one role and prints one JSON line: seconds, peak RSS and CPU seconds of the run process and of its
    download processes (with the fork server they come from: RUSAGE_CHILDREN once it has been reaped)."""
    import dagster as dg

    from ghtrader_assets.defs.futures.assets import build_futures_assets
    from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
    from ghtrader_assets.defs.resources import QuestDBResource
    from ghtrader_assets.futures import calendar as calendar_step
    from ghtrader_assets.futures import ledger as ledger_step
    from ghtrader_assets.futures import pipeline
    from ghtrader_assets.futures.download import DownloadProcess
    from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings

    settings = QuestDBSettings(http_port=args.http, pg_port=args.pg)
    variety, end = args.variety, date.fromisoformat(args.end)
    now = datetime.combine(end, datetime.min.time()).replace(hour=17, tzinfo=CST) + timedelta(days=7)  # all final
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
    new_client = functools.partial(TqSdkClient, TqSettings("sim", "sim"))
    ok, ticks = True, 0
    started = time.perf_counter()
    cpu0, child_cpu0 = _cpu_s(), _cpu_s(resource.RUSAGE_CHILDREN)  # CPU seconds count from here, as the wall time
    if args.worker == "dagster":  # the same run with the chain replaced by ready outcomes: Dagster's own cost
        pipeline.run_days = _ready_outcomes
        ledger_step.verify_days = lambda qdb, calendar, variety, days, at=None: ledger_step.VerifyResult(variety, 0, 0, [], 0.0)
    if args.worker in ("chain", "dagster"):
        tags = {"dagster/asset_partition_range_start": f"{days[0]}|{variety}",
                "dagster/asset_partition_range_end": f"{days[-1]}|{variety}"}
        ok = dg.materialize(assets, selection=["underlying_ticks", "main_l5", "day_index"], resources=resources,
                            instance=instance, tags=tags).success
    elif args.worker in ("direct", "store"):  # run_days without Dagster; `store`: the frames from files
        source = functools.partial(FramesFromFiles, args.frames) if args.worker == "store" else new_client
        with QuestDBClient(settings) as qdb:
            calendar = ledger.read_calendar(qdb)
            histories = calendar_step.session_histories(qdb, [variety], "")
            if args.worker == "store":  # the fork server's one-off import of tqsdk (~4 s) is not the store's work
                from multiprocessing import forkserver

                from ghtrader_assets.futures.download import _context

                _context()
                forkserver.ensure_running()
            started = time.perf_counter()
            cpu0 = _cpu_s()
            outcomes = list(pipeline.run_days(source, qdb, calendar, [(variety, d) for d in days], pipeline.ChainSteps(),
                                              histories, now=now))
        ok = not any(o.error for o in outcomes)
    else:  # download: the chain's download process over the same days, nothing stored (frames kept once)
        with QuestDBClient(settings) as qdb:
            schedule = {r.trading_day: r for r in ledger.read_schedule(qdb, variety)}
        limits = pipeline.PipelineLimits()
        process = DownloadProcess(new_client, [(schedule[d].main_contract, d) for d in days], limits.prefetch_days,
                                  limits.login_days, limits.login_ticks)
        try:
            for d in days:
                frame = process.next(block=True)
                ticks += frame.height
                if args.frames:
                    frame.write_parquet(Path(args.frames) / f"{d}.parquet")
        finally:
            process.stop()
    seconds = time.perf_counter() - started
    _reap_fork_server()
    print(json.dumps({"ok": ok, "seconds": seconds, "days": len(days), "ticks": ticks,
                      "rss_mb": _rss_mb(), "child_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),
                      "cpu_s": _cpu_s() - cpu0, "child_cpu_s": _cpu_s(resource.RUSAGE_CHILDREN) - child_cpu0}))


def _reap_fork_server() -> None:
    """The download processes are children of the fork server (futures.download), not of this process: their
    CPU seconds and peak RSS reach RUSAGE_CHILDREN once the fork server, which has reaped them, is reaped in
    turn. multiprocessing stops its fork server only at exit, so stop it here (its test-only `_stop`)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


def _ready_outcomes(new_client, qdb, calendar, days, steps, histories, now, max_retries=0, limits=None):
    """Stands in for `pipeline.run_days`: one finished outcome per day, at once, with real-sized stats."""
    from ghtrader_assets.domain.ledger import DayStats
    from ghtrader_assets.futures.pipeline import DayOutcome

    stats = DayStats(rows_total=13_700, first_datetime_ns=1_704_150_000_000_000_000,
                     last_datetime_ns=1_704_200_000_000_000_000, l5_present=True, row_hash_sum=123_456_789)
    for variety, day in days:
        yield DayOutcome(variety, day, contract="SHFE.cu2402", segment_id=0, final=True, raw=stats, main_l5=stats,
                         index=stats)


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
        if proc.returncode or not lines or not json.loads(lines[-1])["ok"]:
            raise SystemExit(f"bench worker failed ({proc.returncode}): {out[-2000:]}")
        return json.loads(lines[-1])

    def run(self, role: str, variety: str, end: date, frames: str = "") -> dict:
        self.empty_tables()
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
            pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"), pl.lit(0).alias("answer_hash"),
            pl.lit("ok").alias("flag"))
        pdfs.append(frame.select(RAW_TICKS.column_names).to_pandas(use_pyarrow_extension_array=True))
    with QuestDBClient(bench.settings) as qdb:
        qdb.bootstrap([table])
        qdb.execute(f"TRUNCATE TABLE {table.name}")
        started = time.perf_counter()
        with Sender.from_conf(f"http::addr=127.0.0.1:{bench.settings.http_port};auto_flush=off;") as sender:
            for pdf in pdfs:
                for offset in range(0, len(pdf), 50_000):  # the same request size as the chain's writes
                    sender.dataframe(pdf.iloc[offset:offset + 50_000], table_name=table.name,
                                     symbols=["symbol", "flag"], at="ts")
                    sender.flush()
        qdb.wait_for_wal(table)
        seconds = time.perf_counter() - started
    return seconds, sum(len(p) for p in pdfs)


def spread(values: list[float], digits: int = 3) -> str:
    """`median (min-max)` of the rounds."""
    fmt = f"{{:.{digits}f}}"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _cpu_line(parts: dict[str, float], wall_s: float) -> str:
    """`run process 20 s, download process 80 s, QuestDB 20 s: 1.6 of 2 cores busy over the 90 s`."""
    busy = sum(parts.values()) / wall_s
    return ", ".join(f"{k} {v:.0f} s" for k, v in parts.items() if v >= 0.5) + \
        f": {busy:.2f} of {os.cpu_count()} cores busy over the {wall_s:.0f} s"


def _parts(run: dict) -> dict[str, float]:
    return {"run process": run["cpu_s"], "download process": run["child_cpu_s"], **run["server_cpu_s"]}


def main() -> None:
    _harness.stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=58, help="trading days of SHFE.cu from 2024-01-02 (default 58)")
    parser.add_argument("--density", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds whose ratios are taken (default 3)")
    parser.add_argument("--no-parallel", dest="parallel", action="store_false", help="leave out item 5")
    parser.add_argument("--worker", choices=("chain", "dagster", "direct", "download", "store"), help=argparse.SUPPRESS)
    parser.add_argument("--variety", default=VARIETIES[0], help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--frames", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    end = sim_calendar.trading_days(START, date(2026, 12, 31))[args.days - 1]
    procs, sims = [], {}
    frames_dir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
    dagster_home = Path(tempfile.mkdtemp(prefix="bench-dagster-home-"))
    server = None
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        for variety in VARIETIES if args.parallel else VARIETIES[:1]:
            proc, env = start_simulator(variety, end, args.density)
            procs.append(proc)
            sims[variety] = env
        server = QuestDBServer(home=Path(tempfile.mkdtemp(prefix="bench-qdb-")), ports=ServerPorts.free()).start()
        settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg)
        shutil.copy(Path(__file__).parents[1] / "dagster.yaml", dagster_home / "dagster.yaml")
        cpu_pids = {"QuestDB": server.pid, **{f"simulator {v}": p.pid for v, p in zip(sims, procs)}}
        bench = Bench(settings, sims, dagster_home, cpu_pids)
        cu = VARIETIES[0]
        with QuestDBClient(settings) as qdb:
            qdb.bootstrap()
        load = os.getloadavg()[0]
        say(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}, load average {load:.2f} "
            f"at the start; {cu}, {args.days} trading days {START}..{end}, density {args.density}, {args.rounds} rounds")
        # QuestDB is a JVM: its first minute of ingest and queries runs before the JIT has compiled them (the
        # first chain run of a fresh server measured 10-20 % slower than the later ones). A served QuestDB
        # has long been warm, so one chain run over the first days warms it up; it is not measured.
        bench.run("chain", cu, sim_calendar.trading_days(START, end)[min(9, args.days - 1)])
        downloads, chains, directs = [], [], []
        for i in range(args.rounds):
            order = ("download", "chain", "direct") if i % 2 == 0 else ("direct", "chain", "download")
            got = {role: bench.run(role, cu, end, str(frames_dir) if role == "download" and i == 0 else "")
                   for role in order}
            if i == 0:
                rows = bench.rows()  # after the direct run of round 0 (its last role): the chain's rows
            downloads.append(got["download"])
            chains.append(got["chain"])
            directs.append(got["direct"])
            say(f"  round {i + 1} ({', '.join(order)}): download {got['download']['seconds']:.1f} s, chain "
                f"{got['chain']['seconds']:.1f} s, run_days {got['direct']['seconds']:.1f} s")
        store_run = bench.run("store", cu, end, str(frames_dir))
        stored_rows = sum(bench.rows())
        ceiling_s, ceiling_rows = ceiling(bench, frames_dir)
        dagster_only = bench.run("dagster", cu, end)
        bench.run("chain", cu, end)
        from ghtrader_assets.reader import read_ticks

        read_started = time.perf_counter()
        back = read_ticks(f"KQ.m@{cu}", START, end, settings=settings, cache=False)  # the first read: no local copy
        read_s = time.perf_counter() - read_started
        ticks = downloads[0]["ticks"]
        n = downloads[0]["days"]
        ratio = [c["seconds"] / d["seconds"] for c, d in zip(chains, downloads)]
        share = [max(0.0, 1 - d["seconds"] / c["seconds"]) for c, d in zip(chains, directs)]
        store_rps, ceiling_rps = stored_rows / store_run["seconds"], ceiling_rows / ceiling_s
        say(f"{cu}, {n} trading days: {rows[0]:,} raw + {rows[1]:,} main_l5 rows, {ticks:,} ticks served")
        say(f"  1. download alone                 {spread([d['seconds'] for d in downloads], 1)} s   "
            f"{spread([ticks / d['seconds'] for d in downloads], 0)} ticks/s")
        say(f"  2. chain / download alone         {spread(ratio)}   (goal <= 1.10, median)")
        say(f"  3. store alone / bare write       {store_rps:,.0f} vs {ceiling_rps:,.0f} rows/s: {store_rps / ceiling_rps:.3f}   "
            "(goal >= 0.8)")
        say(f"  4. Dagster share (1 - run_days / chain) {spread(share)}   (goal <= 0.05); Dagster alone "
            f"{dagster_only['seconds']:.1f} s = {1000 * dagster_only['seconds'] / n:.0f} ms per partition")
        say(f"     CPU of a chain run: {_cpu_line(_parts(chains[0]), chains[0]['seconds'])}")
        say(f"     CPU of a download alone: {_cpu_line(_parts(downloads[0]), downloads[0]['seconds'])}")
        say(f"  6. peak RSS: run process {max(c['rss_mb'] for c in chains):.0f} MiB, download process "
            f"{max(c['child_rss_mb'] for c in chains):.0f} MiB (run_days without Dagster {max(d['rss_mb'] for d in directs):.0f} MiB)")
        say(f"  7. read-back (read_ticks)         {read_s:.1f} s   {back.height / read_s:,.0f} rows/s")
        if args.parallel:
            bench.empty_tables()
            before = bench.cpu()
            started = time.perf_counter()
            results = [bench.result(p) for p in [bench.launch("chain", v, end) for v in VARIETIES]]
            both_s = time.perf_counter() - started
            servers = {k: v - before[k] for k, v in bench.cpu().items()}
            both_rows = sum(bench.rows())
            one_rps = sum(rows) / statistics.median(c["seconds"] for c in chains)
            parts = {"run processes": sum(r["cpu_s"] for r in results),
                     "download processes": sum(r["child_cpu_s"] for r in results), **servers}
            one = sum(_parts(chains[0]).values())
            say(f"  5. {' + '.join(VARIETIES)} in two parallel runs: {both_rows:,} rows in {both_s:.1f} s = "
                f"{both_rows / both_s:,.0f} rows/s; one variety {one_rps:,.0f} rows/s; ratio {both_rows / both_s / one_rps:.3f}"
                f"; the CPU bound on {os.cpu_count()} cores: {os.cpu_count() * chains[0]['seconds'] / one:.2f}")
            say(f"     CPU of the two runs: {_cpu_line(parts, both_s)}")
    finally:
        if server is not None:
            server.stop()
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        shutil.rmtree(frames_dir, ignore_errors=True)
    out = Path(__file__).parent / "results" / f"futures_chain_{args.days}d_density{args.density:g}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"(written to {out})")


if __name__ == "__main__":
    main()
