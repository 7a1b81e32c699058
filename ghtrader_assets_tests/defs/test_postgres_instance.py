"""deploy/dagster-postgres.yaml against a real PostgreSQL: the futures chain runs through it, and other
instances (a second object, a second process) see its runs, materializations and dynamic partitions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.defs.futures.assets import build_futures_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.io.questdb import QuestDBSettings
from ghtrader_assets.sim.tq import TqSimServer
from ghtrader_assets_tests.fixtures.postgres import PostgresDsn
from ghtrader_assets_tests.fixtures.tq_sim import tq_env

ROOT = Path(__file__).resolve().parents[2]
VARIETIES = ("SHFE.cu", "DCE.m")
SIM_NOW = "2024-04-12T17:00:00+08:00"

# What a second process reads from the instance: run statuses, latest materializations, dynamic partitions.
READER = """
import json, sys
import dagster as dg
from dagster import DagsterInstance
with DagsterInstance.get() as instance:
    mats = {}
    for key in ("trading_days", "main_schedule", "main_l5"):
        record = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
        mats[key] = sorted({r.partition_key or "" for r in record})
    print(json.dumps({
        "storage": type(instance.run_storage).__name__,
        "runs": sorted(r.status.value for r in instance.get_runs()),
        "trading_days": list(instance.get_dynamic_partitions("trading_day")),
        "materialized": mats,
    }))
"""


@pytest.fixture
def pg_home(postgres_dsn: PostgresDsn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A DAGSTER_HOME holding deploy/dagster-postgres.yaml, its connection in the environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in postgres_dsn.dagster_env().items():
        monkeypatch.setenv(key, value)
    yield home


def test_the_chain_runs_through_the_postgres_instance(
    pg_home: Path, tq_sim: TqSimServer, questdb_settings: QuestDBSettings
) -> None:
    resources = {
        "questdb": QuestDBResource(host=questdb_settings.host, http_port=questdb_settings.http_port,
                                   pg_port=questdb_settings.pg_port),
        "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2),
        "futures": FuturesSettings(start_date=str(tq_sim.market.cfg.start), now=SIM_NOW),
    }
    assets = build_futures_assets(VARIETIES)
    first_day = tq_sim.market.trading_days()[0].isoformat()
    part = f"{first_day}|SHFE.cu"

    with dg.DagsterInstance.get() as writer:
        assert type(writer.run_storage).__name__ == "PostgresRunStorage"
        assert type(writer.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(writer.schedule_storage).__name__ == "PostgresScheduleStorage"
        # The run queue and pools of dagster.yaml carried over.
        concurrency = writer.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 4
        assert [t["key"] for t in concurrency.run_queue_config.tag_concurrency_limits] == ["ghtrader/variety", "ghtrader/provider"]
        assert concurrency.pool_config.default_pool_limit == 1
        with tq_env(tq_sim):
            for selection, key in ((["trading_days"], None), (["main_schedule"], "SHFE.cu"),
                                   (["underlying_ticks", "main_l5", "day_index"], part)):
                result = dg.materialize(assets, selection=selection, partition_key=key, resources=resources,
                                        instance=writer, raise_on_error=False)
                assert result.success, [str(e.event_specific_data) for e in result.all_events
                                        if e.event_type_value == "STEP_FAILURE"]
        run_ids = {r.run_id for r in writer.get_runs()}

    wanted_days = [d.isoformat() for d in tq_sim.market.trading_days()]
    # A second instance object, built from the same DAGSTER_HOME as a webserver or daemon would build it.
    with dg.DagsterInstance.get() as reader:
        assert {r.run_id for r in reader.get_runs()} == run_ids and len(run_ids) == 3
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in reader.get_runs())
        assert list(reader.get_dynamic_partitions("trading_day")) == wanted_days
        assert reader.get_latest_materialization_event(dg.AssetKey("trading_days")) is not None
        status = reader.get_status_by_partition(dg.AssetKey("main_schedule"), ["SHFE.cu", "DCE.m"],
                                                assets[1].partitions_def)
        assert status == {"SHFE.cu": dg.AssetPartitionStatus.MATERIALIZED, "DCE.m": None}
        for key in ("underlying_ticks", "main_l5", "day_index"):
            assert reader.get_materialized_partitions(dg.AssetKey(key)) == {part}

    # A second process: nothing shared with this one but the environment (DAGSTER_HOME, DAGSTER_PG_*).
    out = subprocess.run([sys.executable, "-c", READER], capture_output=True, text=True, timeout=120,
                         env=os.environ.copy(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["storage"] == "PostgresRunStorage"
    assert seen["runs"] == ["SUCCESS"] * 3
    assert seen["trading_days"] == wanted_days
    assert seen["materialized"] == {"trading_days": [""], "main_schedule": ["SHFE.cu"], "main_l5": [part]}
