"""The run process SIGKILLed in the middle of a range backfill; the re-run completes with nothing lost or
duplicated (row counts and row-hash aggregates of raw and main_l5 equal the simulator's ticks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.sim.tq import Faults, TqSimServer
from ghtrader_assets_tests.fixtures.chain import (
    SIM_NOW,
    Chain,
    assert_stored_equals_truth,
    failure_message,
    questdb_resource,
    resources,
)

pytestmark = pytest.mark.reliability
VARIETY = "SHFE.rb"


def driver_env(srv: TqSimServer, home: Path, tmp: Path, qdb_password: str, tq_password: str = "sim") -> dict[str, str]:
    (tmp / "home").mkdir(exist_ok=True)
    return {**os.environ, **srv.env(), "DAGSTER_HOME": str(home), "HOME": str(tmp / "home"),
            "QUESTDB_PASSWORD": qdb_password, "TQSDK_PASSWORD": tq_password}


def driver_args(settings: QuestDBSettings, srv: TqSimServer, first, last, **extra) -> str:
    return json.dumps({"variety": VARIETY, "varieties": [VARIETY], "first": str(first), "last": str(last),
                       "http_port": settings.http_port, "pg_port": settings.pg_port, "host": settings.host,
                       "start_date": str(srv.market.cfg.start), "now": SIM_NOW, **extra})


def index_days(qdb: QuestDBClient, variety: str, days, since: datetime | None = None) -> int:
    """Days of the range indexed (since `since`, naive UTC: by this run, not by an earlier test's)."""
    try:
        index = ledger.read_index(qdb, f"KQ.m@{variety}", days[0], days[-1], "main_l5")
    except Exception:  # noqa: BLE001 - the table may not exist yet
        return 0
    return index.height if since is None else int((index["updated_at"] >= since).sum()) if index.height else 0


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("moment", ["stalled-download", "running-ingest"])
def test_sigkill_mid_backfill_then_rerun_loses_and_duplicates_nothing(
    tq_sim: TqSimServer, tq_sim_factory, questdb_settings: QuestDBSettings, tmp_path: Path, figures, moment: str
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # stalled-download: the server answers the first tick requests, then hangs, so the run is provably in
    # the middle of the range (some partitions stored, one download open) when it is killed.
    # running-ingest: killed as soon as two partitions are indexed, wherever the run is (download, raw
    # write, main_l5 INSERT-SELECT, index write).
    stall_after = 7 if moment == "stalled-download" else 0
    hung = tq_sim_factory(faults=Faults(stall_after_tick_responses=stall_after or None, stall_seconds=15))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance, \
            QuestDBClient(questdb_settings) as qdb:
        chain = Chain(tq_sim, instance, resources(questdb_resource(questdb_settings), tq_sim.market), (VARIETY,))
        chain.prepare()
        # ten days for the running ingest, so the kill (two days in) always lands inside the range
        days = chain.days[:6] if moment == "stalled-download" else chain.days[6:16]
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ghtrader_assets_tests.reliability.backfill_driver",
             driver_args(questdb_settings, hung, days[0], days[-1], tqsdk={"download_timeout_s": 300})],
            env=driver_env(hung, home, tmp_path, questdb_settings.password), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            wanted = 1 if stall_after else 2
            while not (hung.stats["tick_responses"] >= stall_after and index_days(qdb, VARIETY, days, started) >= wanted):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the backfill made no progress"
                time.sleep(0.2 if stall_after else 0.05)
            if stall_after:
                time.sleep(0.5)
            children = children_of(proc.pid)  # the download process (spawned by the run)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert children, "the run had no download process"
            deadline = time.monotonic() + 20  # within half a second normally; twice-slow machines included
            while time.monotonic() < deadline and any(alive(c) for c in children):
                time.sleep(0.2)
            assert not any(alive(c) for c in children), "a download process outlived the killed run"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        figures["faults"] += 1
        assert proc.returncode == -signal.SIGKILL
        done_before = index_days(qdb, VARIETY, days, started)
        assert 1 <= done_before < len(days)
        # What the user sees: the run never ended (run monitoring marks such runs failed when deployed);
        # the partitions finished before the kill are materialized in the instance.
        (run,) = instance.get_runs()[:1]
        assert run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)
        materialized = instance.get_materialized_partitions(dg.AssetKey("day_index"))
        assert 1 <= len(materialized) < len(days)

        result = chain.backfill(VARIETY, days[0], days[-1])
        assert result.success, failure_message(result)
        figures["rows_compared"] += assert_stored_equals_truth(qdb, chain.market, VARIETY, days)
        assert len(instance.get_materialized_partitions(dg.AssetKey("day_index"))) == len(days)
