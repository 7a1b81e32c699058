"""Rewrites of (symbol, trading day)s in separate processes, at the same time, into the same UTC
partitions of the shared tick tables, with a reader polling and SIGKILLs inside a rewrite: no row of
another (symbol, day) is ever lost or hidden, and every rewritten day ends as its last successful write."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from ghtrader_assets.io import futures_store as store
from ghtrader_assets_tests.store_days import materialize_main_l5, replace_raw_day
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS, RAW_TICKS
from ghtrader_assets_tests.reliability.rewrite_worker import CAL, expected, tick_frame

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
# Tuesday to Thursday: each day's night session lies in the previous UTC day, so neighbouring days
# share UTC partitions, and every variety shares them with every other.
DAYS = ["2025-03-11", "2025-03-12", "2025-03-13"]
REWRITERS = [("SHFE.cu", ["SHFE.cu2504", "SHFE.cu2505"]), ("DCE.m", ["DCE.m2505", "DCE.m2509"]),
             ("SHFE.al", ["SHFE.al2504", "SHFE.al2505"])]
NEWCOMERS = [f"DCE.y25{m:02d}" for m in range(1, 13)]  # twelve contracts, each day written once
SEEDED = ["CZCE.SR2505"]  # stored before anything starts; nobody touches it


def spawn(args: dict, settings: QuestDBSettings) -> subprocess.Popen:
    payload = json.dumps({**args, "http_port": settings.http_port, "pg_port": settings.pg_port})
    return subprocess.Popen([sys.executable, "-m", "ghtrader_assets_tests.reliability.rewrite_worker", payload],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def stored(qdb: QuestDBClient, kind: str, symbol: str, day: str) -> dict:
    table = RAW_TICKS if kind == "raw" else MAIN_L5_TICKS
    d = date.fromisoformat(day)
    return {k: v for k, v in store.day_stats(qdb, table, symbol, d, CAL.bounds_ns(d)).as_dict().items()
            if k in ("rows_total", "row_hash_sum", "row_hash_sum_abs", "row_hash_min", "row_hash_max")}


def seed(qdb: QuestDBClient, contracts: list[str]) -> dict[str, dict]:
    state = {}
    for contract in contracts:
        for d in DAYS:
            day = date.fromisoformat(d)
            frame = tick_frame(contract, day, 400, variant=7)
            replace_raw_day(qdb, contract, day, CAL.bounds_ns(day), frame)
            state[f"raw|{contract}|{d}"] = expected(frame)
    return state


def compare(qdb: QuestDBClient, want: dict[str, dict]) -> tuple[int, list[str]]:
    rows, problems = 0, []
    qdb.wait_for_wal(RAW_TICKS)
    qdb.wait_for_wal(MAIN_L5_TICKS)
    for key, stats in sorted(want.items()):
        kind, symbol, day = key.split("|")
        got = stored(qdb, kind, symbol, day)
        rows += stats["rows_total"]
        if got != stats:
            problems.append(f"{key}: stored {got}, expected {stats}")
    return rows, problems


def test_concurrent_rewrites_lose_nothing(qdb: QuestDBClient, questdb_settings: QuestDBSettings, tmp_path: Path,
                                          figures: Counter, summary: list[str]) -> None:
    qdb.bootstrap()
    want = seed(qdb, SEEDED)
    stop = tmp_path / "stop"
    watched = NEWCOMERS + SEEDED
    reader = spawn({"role": "reader", "symbols": watched, "stop_file": str(stop)}, questdb_settings)
    procs = [spawn({"role": "rewriter", "variety": v, "contracts": cs, "days": DAYS, "rounds": 4,
                    "long": 1500, "short": 1100}, questdb_settings) for v, cs in REWRITERS]
    writer = spawn({"role": "writer", "contracts": NEWCOMERS, "days": DAYS, "n": 600, "pause_s": 0.02}, questdb_settings)
    results = [result_of(p) for p in procs]
    want.update(result_of(writer)["state"])
    stop.write_text("done")
    seen = result_of(reader)
    rewrites = sum(r["rewrites"] for r in results)
    for r in results:
        want.update(r["state"])
    rows, problems = compare(qdb, want)
    retired = sum(r["retired_rows"] for r in results)
    figures["concurrent_rewrites"] += rewrites
    figures["rows_compared"] += rows
    figures["lost"] += len(problems) + len(seen["drops"])
    summary.append(f"concurrent rewrites: {len(REWRITERS)} rewriting processes, 1 writer, 1 reader ({seen['polls']} polls); "
                   f"{rewrites} rewrites ({retired} rows retired), {len(want)} (symbol, day)s and {rows} rows compared, "
                   f"{len(problems)} differences, {len(seen['drops'])} count drops seen by the reader")
    assert not seen["drops"], seen["drops"][:10]
    assert not problems, problems[:10]
    assert retired > 0  # the stale-row path ran


@pytest.mark.parametrize("point", ["after_write", "after_update", "after_insert"])
def test_a_rewrite_killed_inside_is_finished_by_the_rerun(point: str, qdb: QuestDBClient, questdb_settings: QuestDBSettings,
                                                          figures: Counter) -> None:
    qdb.bootstrap()
    variety, (old, new) = "INE.sc", ["INE.sc2505", "INE.sc2506"]
    day = "2025-03-12"
    d = date.fromisoformat(day)
    from ghtrader_assets.domain.schedule import build_schedule

    # Before: both contracts stored, main_l5 following the old one; a bystander in the same partitions.
    want = seed(qdb, [f"GFEX.si25{ord(point[6]) % 12 + 1:02d}"])
    for contract in (old, new):
        replace_raw_day(qdb, contract, d, CAL.bounds_ns(d), tick_frame(contract, d, 900, variant=1))
    materialize_main_l5(qdb, variety, d, CAL.bounds_ns(d), build_schedule(variety, {d: old})[0])

    args = {"role": "pause", "pause_at": point, "variety": variety, "day": day, "n": 500, "variant": 2,
            "contract": new if point == "after_insert" else old}
    victim = spawn(args, questdb_settings)
    line = victim.stdout.readline()
    assert json.loads(line) == {"paused": point}, victim.stderr.read()[-2000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    figures["faults"] += 1

    # Recovery runs while another rewrite of the same partitions is in progress.
    other = spawn({"role": "rewriter", "variety": "SHFE.zn", "contracts": ["SHFE.zn2504", "SHFE.zn2505"],
                   "days": DAYS, "rounds": 2, "long": 800, "short": 500}, questdb_settings)
    time.sleep(0.5)
    if point == "after_insert":
        row = build_schedule(variety, {d: new})[0]
        assert materialize_main_l5(qdb, variety, d, CAL.bounds_ns(d), row) == 900
        want[f"main_l5|KQ.m@{variety}|{day}"] = expected(tick_frame(new, d, 900, variant=1))
    else:
        frame = tick_frame(old, d, 500, variant=2)
        replace_raw_day(qdb, old, d, CAL.bounds_ns(d), frame)
        want[f"raw|{old}|{day}"] = expected(frame)
        # main_l5 still follows the old contract's previous answer until it is rebuilt; rebuild it.
        materialize_main_l5(qdb, variety, d, CAL.bounds_ns(d), build_schedule(variety, {d: old})[0])
        want[f"main_l5|KQ.m@{variety}|{day}"] = expected(frame)
    want[f"raw|{new}|{day}"] = expected(tick_frame(new, d, 900, variant=1))
    want.update(result_of(other)["state"])
    rows, problems = compare(qdb, want)
    figures["rows_compared"] += rows
    figures["lost"] += len(problems)
    assert not problems, problems[:10]
