"""Benchmark: reading the main series back, every figure measured side by side in one run.

    .venv/bin/python bench/bench_reader.py                 # 58 and 242 real-density days of SHFE.cu (~25 min)
    .venv/bin/python bench/bench_reader.py --days 58       # 58 days only (~8 min)
    .venv/bin/python bench/bench_reader.py --ten-years     # also the streamed ten-year read (~+5 min)
    .venv/bin/python bench/bench_reader.py --days none --ten-years   # the ten-year read alone
    .venv/bin/python bench/bench_reader.py --days 242 --verify-only  # the re-verification's cost alone (~6 min)

Starts its own QuestDB (free ports, temp dir) and the TqSdk simulator (the roll factors' daily klines), and
stores SHFE.cu at real density (55,800 ticks a trading day, the simulator's density 1.0) through the chain's
own store path (futures.pipeline.run_days: raw, main_l5, the day index), beside SHFE.rb at a quarter of it, so
that the table is shared as in production; then the roll factors through their own step. For each length
(58 and 242 trading days from 2024-01-02) it measures, interleaved over --repeat rounds (medians):
  - the reader before this release: one Parquet export of the whole range (futures_store.read_ticks);
  - read_ticks: a first read (an empty cache directory), a repeated read (the cache warm), and without cache;
  - the options the design was chosen from: weekly exports one at a time; weekly time-range-only exports,
    two at a time, from a table holding only this variety's rows (what a per-variety layout would give);
  - adjusted reads (pre, spread; first and repeated), and 1-minute bars (read_bars);
  - the ceiling: polars reading the same rows from a local Parquet file (zstd, its default; lz4; none);
and checks that every unadjusted read returns the same rows, ns timestamps and values as the reader before.
First, for each length, the weekly re-verification of stored history (futures.ledger.verify_days: every stored
day re-counted inside QuestDB and compared with its index row), with its cost scaled to a variety-year.
The server's and this process's CPU seconds are given per figure. Peak RSS: a streamed read (iter_ticks)
and a whole-frame read of the 242 days, each in a process of its own; with --ten-years, a streamed read of
ten years (2015-2024, a weekday calendar, a tenth of real density, in a second QuestDB) against one of those
years. Figures only: nothing is asserted. SIGINT/SIGTERM stop every server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ghtrader_assets import reader  # noqa: E402
from ghtrader_assets.domain.calendar import CST, TradingCalendar  # noqa: E402
from ghtrader_assets.domain.read_plan import plan_chunks  # noqa: E402
from ghtrader_assets.domain.schedule import build_schedule  # noqa: E402
from ghtrader_assets.domain.ticks import TICK_COLUMNS, with_row_hash, with_seq  # noqa: E402
from ghtrader_assets.io import futures_store as store  # noqa: E402
from ghtrader_assets.io import ledger_store as ledger  # noqa: E402
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings, ts_literal  # noqa: E402
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS  # noqa: E402
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts  # noqa: E402

START = date(2024, 1, 2)
ENDS = {58: date(2024, 3, 29), 242: date(2024, 12, 31)}
NOW = datetime(2025, 1, 2, 19, 0, tzinfo=CST)  # every stored day final
CU, RB = "SHFE.cu", "SHFE.rb"
SYMBOL = f"KQ.m@{CU}"


# -- helpers ------------------------------------------------------------------------------------------------------
def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Stopwatch:
    """Wall seconds, QuestDB CPU seconds and this process's CPU seconds of one call."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __call__(self, call: Callable[[], object]) -> tuple[float, float, float, object]:
        s0, c0, t0 = process_cpu_s(self.server_pid), own_cpu_s(), time.perf_counter()
        out = call()
        return time.perf_counter() - t0, process_cpu_s(self.server_pid) - s0, own_cpu_s() - c0, out


def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.height == b.height and a.schema == b.schema and a.equals(b)


# -- loading: the chain's own store path on the simulator's ticks ---------------------------------------------------
class FromMarket:
    """Stands in for the TqSdk login in the download process: the day's real ticks from the simulated market (built
    there from its config), as the client returns them."""

    def __init__(self, cfg) -> None:  # noqa: ANN001
        from ghtrader_assets.sim.tq import SimMarket

        self.market = SimMarket(cfg)

    def ticks(self, contract: str, day: date) -> pl.DataFrame:
        from ghtrader_assets.io.tqsdk_client import _tick_frame

        t = self.market.real_ticks(contract, day)
        return _tick_frame({"datetime_ns": t["datetime"].to_numpy(), **{c: t[c].to_numpy() for c in TICK_COLUMNS}}, contract)

    def close(self) -> None:
        pass


def load(settings: QuestDBSettings, market, days: list[date], variety: str, calendar: TradingCalendar) -> int:  # noqa: ANN001
    import functools

    from ghtrader_assets.futures import calendar as calendar_step
    from ghtrader_assets.futures import pipeline

    with QuestDBClient(settings) as qdb:
        ledger.write_schedule(qdb, variety, build_schedule(variety, {d: market.main_contract(variety, d) for d in days}),
                              "continuous_table")
        ledger.write_sessions(qdb, variety, market.trading_time(variety), START, True)
        histories = calendar_step.session_histories(qdb, [variety], "")
        outcomes = list(pipeline.run_days(functools.partial(FromMarket, market.cfg), qdb, calendar, [(variety, d) for d in days], pipeline.ChainSteps(),
                                          histories, now=NOW))
    errors = [o.error for o in outcomes if o.error]
    if errors:
        raise SystemExit(f"loading {variety} failed: {errors[:3]}")
    return sum(o.main_l5.rows_total for o in outcomes if o.main_l5)


# -- the design options -------------------------------------------------------------------------------------------
def weekly_exports(settings: QuestDBSettings, calendar: TradingCalendar, days: list[date], table: str,
                   by_symbol: bool, workers: int) -> int:
    """Weekly exports of every column, `workers` at a time; with `by_symbol` False, bounded by the
    designated timestamp alone (only right on a table holding one variety)."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = plan_chunks(calendar, days)

    def one(chunk) -> int:  # noqa: ANN001
        lo, hi = calendar.bounds_ns(chunk.first)[0], calendar.bounds_ns(chunk.last)[1]
        where = f"symbol = '{SYMBOL}' AND " if by_symbol else ""
        with QuestDBClient(settings) as qdb:
            payload = qdb.export_parquet(f"SELECT * FROM {table} WHERE {where}ts >= '{ts_literal(lo)}' "
                                         f"AND ts < '{ts_literal(hi)}' ORDER BY ts, seq", store.EXPORT_CODEC)
        return pl.read_parquet(payload).height

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, chunks))


# -- the RSS worker -------------------------------------------------------------------------------------------------
def rss_worker(args: argparse.Namespace) -> None:
    settings = QuestDBSettings(http_port=args.http, pg_port=args.pg, request_timeout_s=600)
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    started = time.perf_counter()
    rows = 0
    if args.mode == "stream":
        for week in reader.iter_ticks(args.symbol, first, last, settings=settings, cache=False):
            rows += week.height
    else:
        rows = reader.read_ticks(args.symbol, first, last, settings=settings, cache=False).height
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a worker of a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss(settings: QuestDBSettings, symbol: str, first: date, last: date, mode: str, children: list) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--worker", "--mode", mode, "--symbol", symbol,
                             "--first", str(first), "--last", str(last), "--http", str(settings.http_port),
                             "--pg", str(settings.pg_port)], stdout=subprocess.PIPE, text=True)
    children.append(proc)
    out, _ = proc.communicate()
    children.remove(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"RSS worker failed ({proc.returncode}): {out[-1000:]}")
    return json.loads(lines[-1])


def ten_years(home: Path, children: list, say: Callable[[str], None]) -> None:
    """Ten years of a weekday calendar at a tenth of real density in a QuestDB of their own; the streamed
    read of all of them against one year, and the whole-frame read of that year."""
    first, last = date(2014, 12, 1), date(2024, 12, 31)  # the calendar starts before the read (its first night)
    calendar = TradingCalendar.from_flags((first + timedelta(i), (first + timedelta(i)).weekday() < 5)
                                          for i in range((last - first).days + 1))
    server = QuestDBServer(home=home, ports=ServerPorts.free()).start()
    try:
        settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg, request_timeout_s=600)
        per_day = 5_580
        with QuestDBClient(settings) as qdb:
            qdb.bootstrap()
            ledger.write_calendar(qdb, calendar)
            days = calendar.between(date(2015, 1, 1), last)
            for i in range(0, len(days), 20):
                qdb.write(MAIN_L5_TICKS, pl.concat([synthetic_day(calendar, d, per_day) for d in days[i:i + 20]]))
            qdb.wait_for_wal(MAIN_L5_TICKS)
        year = calendar.between(date(2024, 1, 1), last)
        decade = rss(settings, SYMBOL, days[0], days[-1], "stream", children)
        one = rss(settings, SYMBOL, year[0], year[-1], "stream", children)
        frame = rss(settings, SYMBOL, year[0], year[-1], "frame", children)
        say(f"ten years ({len(days)} weekdays x {per_day:,} ticks = {decade['rows']:,} rows): streamed peak RSS "
            f"{decade['rss_mb']:,.0f} MiB ({decade['rows'] / decade['seconds']:,.0f} rows/s); one of those years streamed "
            f"{one['rss_mb']:,.0f} MiB, as one frame {frame['rss_mb']:,.0f} MiB")
    finally:
        server.stop()


def synthetic_day(calendar: TradingCalendar, day: date, n: int) -> pl.DataFrame:
    """n main_l5 rows of one day (09:00 Beijing on, 2 per second), values from a random walk."""
    start = int(datetime.combine(day, datetime.min.time()).replace(hour=9, tzinfo=CST).timestamp()) * 10**9
    rng = np.random.default_rng(day.toordinal())
    price = 70000.0 + 10 * np.cumsum(rng.choice([-1, 0, 1], size=n))
    frame = pl.DataFrame({"symbol": [SYMBOL] * n, "datetime_ns": start + np.arange(n, dtype=np.int64) * 500_000_000,
                          **{c: price + i for i, c in enumerate(TICK_COLUMNS)}})
    return with_seq(with_row_hash(frame)).with_columns(
        pl.from_epoch("datetime_ns", time_unit="ns").alias("ts"), pl.lit(datetime(day.year, day.month, day.day)).alias("trading_day"),
        pl.lit("SHFE.cu2501").alias("underlying_contract"), pl.lit(20150105, dtype=pl.Int32).alias("segment_id"),
        pl.lit(1).alias("schedule_hash"), pl.lit(0).alias("answer_hash"), pl.lit(0).alias("session_hash"),
    ).select(MAIN_L5_TICKS.column_names)


# -- the run --------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", default="58,242", help="lengths to measure (of 58, 242)")
    parser.add_argument("--density", type=float, default=1.0, help="SHFE.cu's ticks per 500 ms slot (1.0: real)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ten-years", action="store_true")
    parser.add_argument("--verify-only", action="store_true", help="measure the re-verification only, no reads")
    parser.add_argument("--out", default="", help="also write the figures to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--mode", "--symbol", "--first", "--last"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pg", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return rss_worker(args)

    lengths = sorted(int(n) for n in args.days.split(",") if n.strip().isdigit())  # --days none: ten years only
    workdir = Path(tempfile.mkdtemp(prefix="bench-reader-"))
    servers: list = []
    children: list[subprocess.Popen] = []

    def stop(signum: int, _frame) -> None:  # noqa: ANN001
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        run(args, lengths, workdir, servers, children, say)
    finally:
        for proc in children:
            proc.kill()
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.out and lines:
            Path(args.out).write_text("\n".join(lines) + "\n")


def run(args: argparse.Namespace, lengths: list[int], workdir: Path, servers: list, children: list,
        say: Callable[[str], None]) -> None:
    from ghtrader_assets.futures import roll_factors as factors_step
    from ghtrader_assets.io.tqsdk_client import TqSdkClient, TqSettings
    from ghtrader_assets.sim.tq import MarketConfig, SimMarket, TqSimServer
    from ghtrader_assets.sim.tq import calendar as sim_calendar

    if not lengths:
        say(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}, load average "
            f"{os.getloadavg()[0]:.1f} at the start")
        if args.ten_years:
            ten_years(workdir / "qdb10", children, say)
        say(f"load average at the end {os.getloadavg()[0]:.1f}")
        return
    end = ENDS[lengths[-1]]
    server = QuestDBServer(home=workdir / "qdb", ports=ServerPorts.free()).start()
    servers.append(server)
    settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg, request_timeout_s=600)
    sim = TqSimServer(MarketConfig(start=START, end=end, varieties=(CU, RB), density=args.density,
                                   now=datetime(2025, 1, 2, 19, 0))).start()
    servers.append(sim)
    load_avg = os.getloadavg()
    say(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}, load average "
        f"{load_avg[0]:.1f} at the start; QuestDB 9.3.4 on loopback; SHFE.cu density {args.density}")
    first_day, last_day = sim_calendar.CAL_START, sim_calendar.CAL_END
    calendar = TradingCalendar.from_flags((first_day + timedelta(i), sim_calendar.is_trading_day(first_day + timedelta(i)))
                                          for i in range((last_day - first_day).days + 1))
    days = calendar.between(START, end)
    with QuestDBClient(settings) as qdb:
        qdb.bootstrap()
        ledger.write_calendar(qdb, calendar)
    t0 = time.perf_counter()
    rows = load(settings, sim.market, days, CU, calendar)
    rb_rows = load(settings, SimMarket(MarketConfig(start=START, end=end, varieties=(RB,), density=args.density / 4)),
                   days, RB, calendar)
    os.environ.update(sim.env())
    with QuestDBClient(settings) as qdb, TqSdkClient(TqSettings("sim", "sim")) as tq:
        factors = factors_step.refresh_roll_factors(tq, qdb, CU, calendar)
        qdb.execute(f"CREATE TABLE bench_cu_only AS (SELECT * FROM {MAIN_L5_TICKS.name} WHERE symbol = '{SYMBOL}') "
                    "TIMESTAMP(ts) PARTITION BY DAY")
    say(f"stored {rows:,} SHFE.cu main_l5 rows ({len(days)} days) and {rb_rows:,} SHFE.rb rows, raw and main_l5, in "
        f"{time.perf_counter() - t0:.0f} s; {len(factors.switches)} roll factors ({factors.kline_requests} daily-kline requests)")
    watch = Stopwatch(server.pid)
    for n in lengths:
        reverify(settings, calendar, calendar.between(START, ENDS[n]), watch, say)
    if args.verify_only:
        return
    for n in lengths:
        measure(settings, calendar, calendar.between(START, ENDS[n]), n, args.repeat, workdir, watch, say)
    stream = rss(settings, SYMBOL, START, ENDS[lengths[-1]], "stream", children)
    frame = rss(settings, SYMBOL, START, ENDS[lengths[-1]], "frame", children)
    say(f"peak RSS, {lengths[-1]} days ({stream['rows']:,} rows): streamed (iter_ticks) {stream['rss_mb']:,.0f} MiB, "
        f"one frame (read_ticks) {frame['rss_mb']:,.0f} MiB")
    if args.ten_years:
        ten_years(workdir / "qdb10", children, say)
    say(f"load average at the end {os.getloadavg()[0]:.1f}")


def reverify(settings: QuestDBSettings, calendar: TradingCalendar, days: list[date], watch: Stopwatch,
             say: Callable[[str], None]) -> None:
    """The weekly re-verification over these days, twice (the second with QuestDB's pages warm)."""
    from ghtrader_assets.futures import ledger as ledger_step

    for label in ("first", "again"):
        def one() -> ledger_step.VerifyResult:
            with QuestDBClient(settings) as qdb:
                return ledger_step.verify_days(qdb, calendar, CU, days)

        wall, server_s, client_s, result = watch(one)
        year = 242 / len(days)
        say(f"re-verification ({label}), {len(days)} days, {result.rows:,} main_l5 rows, {result.bad_days} mismatches: "
            f"{wall:.1f} s (QuestDB {server_s:.1f} / client {client_s:.1f} CPU-s); per variety-year (242 days) "
            f"{wall * year:.1f} s, {result.rows * year / 1e6:.1f} M rows")


def measure(settings: QuestDBSettings, calendar: TradingCalendar, days: list[date], n: int, repeat: int, workdir: Path,
            watch: Stopwatch, say: Callable[[str], None]) -> None:
    first, last = days[0], days[-1]
    with QuestDBClient(settings) as qdb:
        today = store.read_ticks(qdb, SYMBOL, days, calendar, "main_l5")
    rows = today.height
    files = {}
    for codec in ("zstd", "lz4", "uncompressed"):
        files[codec] = workdir / f"ceiling_{n}_{codec}.parquet"
        today.write_parquet(files[codec], compression=codec)
    del today
    figures: dict[str, list[tuple[float, float, float]]] = {}

    def timed(name: str, call: Callable[[], object]) -> None:
        wall, server_s, client_s, _ = watch(call)
        figures.setdefault(name, []).append((wall, server_s, client_s))

    def today_reader() -> pl.DataFrame:
        with QuestDBClient(settings) as qdb:
            return store.read_ticks(qdb, SYMBOL, days, calendar, "main_l5")

    for r in range(repeat):
        cache = workdir / f"cache_{n}_{r}"
        adjusted_cache = workdir / f"cache_adj_{n}_{r}"
        timed("the reader before (one export)", lambda: today_reader().height)
        timed("read_ticks, first read", lambda: reader.read_ticks(SYMBOL, first, last, settings=settings, cache=cache).height)
        timed("read_ticks, repeated (cache)",
              lambda: reader.read_ticks(SYMBOL, first, last, settings=settings, cache=cache).height)
        timed("read_ticks, no cache", lambda: reader.read_ticks(SYMBOL, first, last, settings=settings, cache=False).height)
        timed("option: weekly exports, one at a time",
              lambda: weekly_exports(settings, calendar, days, MAIN_L5_TICKS.name, True, 1))
        timed("option: per-variety table, time-range exports x2",
              lambda: weekly_exports(settings, calendar, days, "bench_cu_only", False, 2))
        timed("adjusted (pre, spread), first read",
              lambda: reader.read_ticks(SYMBOL, first, last, adjust="pre", settings=settings, cache=adjusted_cache).height)
        timed("adjusted (pre, spread), repeated",
              lambda: reader.read_ticks(SYMBOL, first, last, adjust="pre", settings=settings, cache=adjusted_cache).height)
        timed("1-minute bars (read_bars)", lambda: reader.read_bars(SYMBOL, first, last, settings=settings).height)
        for codec, path in files.items():
            timed(f"ceiling: polars, local Parquet ({codec})", lambda p=path: pl.read_parquet(p).height)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(adjusted_cache, ignore_errors=True)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in figures.items()}
    ceiling = min(v[0] for k, v in med.items() if k.startswith("ceiling"))
    before = med["the reader before (one export)"][0]
    bars = reader.read_bars(SYMBOL, first, last, settings=settings).height
    say(f"\n{n} trading days, {rows:,} SHFE.cu main_l5 rows (medians of {repeat}; QuestDB / reader CPU seconds):")
    say(f"  {'read':52s} {'seconds':>8s} {'rows/s':>11s} {'/ before':>9s} {'/ ceiling':>10s} {'CPU s':>11s}")
    for name, (wall, server_s, client_s) in med.items():
        say(f"  {name:52s} {wall:8.2f} {rows / wall:11,.0f} {before / wall:9.2f} {ceiling / wall:10.2f} "
            f"{server_s:5.1f} / {client_s:4.1f}")
    say(f"  1-minute bars: {bars:,} bars from the {rows:,} ticks; rows/s above counts ticks read")
    cache = workdir / f"cache_check_{n}"
    checks = {"first read": same_as_before(settings, calendar, days, cache),
              "repeated (cache)": same_as_before(settings, calendar, days, cache),
              "no cache": same_as_before(settings, calendar, days, False)}
    shutil.rmtree(cache, ignore_errors=True)
    say("  same rows, ns timestamps and values as the reader before, week by week: "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))


def same_as_before(settings: QuestDBSettings, calendar: TradingCalendar, days: list[date], cache: Path | bool) -> bool:
    """Every week read_ticks yields equals the reader before on that week's days (memory: one week)."""
    with QuestDBClient(settings) as qdb:
        weeks = reader.iter_ticks(SYMBOL, days[0], days[-1], settings=settings, cache=cache)
        chunks = plan_chunks(calendar, days)
        for chunk, week in zip(chunks, weeks):
            if not same(week, store.read_ticks(qdb, SYMBOL, list(chunk.days), calendar, "main_l5")):
                return False
        return next(weeks, None) is None


if __name__ == "__main__":
    main()
