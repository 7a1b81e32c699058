"""QuestDB stopped in the middle of an ingest and started again (a dedicated server on free ports), then the
secrets audit: the TqSdk password, the IB account id and the QuestDB password (the dedicated server runs
with a non-default PGWire and HTTP password) never appear in logs, metadata, run config/tags or summaries."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.ibkr.assets import ibkr_contracts, ibkr_hours_bars
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.defs.resources import QuestDBResource
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBError, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts
from ghtrader_assets.sim.tq import Faults, MarketConfig, TqSimServer
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF
from ghtrader_assets_tests.fixtures.tq_sim import TQ_SIM_CONFIG
from ghtrader_assets_tests.fixtures.chain import (
    SIM_NOW,
    Chain,
    assert_stored_equals_truth,
    failure_message,
)
from ghtrader_assets_tests.reliability.test_kill_and_rerun import driver_args, driver_env, index_days

pytestmark = pytest.mark.reliability
VARIETY = "SHFE.rb"
QDB_SECRET = "Qdb-s3cret-7f41e9"
TQ_SECRET = "Tq-s3cret-52ab0c"
IB_ACCOUNT = "DU7395148"
SECRETS = (QDB_SECRET, TQ_SECRET, IB_ACCOUNT)
STALL_AFTER = 7
EVIDENCE: dict[str, str] = {}  # text the outage run produced (subprocess stdout/stderr), audited below


@pytest.fixture(scope="module")
def secret_env() -> Iterator[None]:
    """Passwords reach the product only through the environment (dg.EnvVar), as deployed."""
    values = {"QUESTDB_PASSWORD": QDB_SECRET, "TQSDK_PASSWORD": TQ_SECRET,
              "QDB_PG_PASSWORD": QDB_SECRET, "QDB_HTTP_USER": "admin", "QDB_HTTP_PASSWORD": QDB_SECRET,
              "QDB_HTTP_HEALTH_CHECK_AUTHENTICATION_REQUIRED": "false"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def secret_qdb(secret_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDBServer]:
    server = QuestDBServer(home=tmp_path_factory.mktemp("qdb-outage"), ports=ServerPorts.free()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secret_tq(secret_env) -> Iterator[TqSimServer]:
    # Answers the first tick requests, then pauses once for 10 s: the moment QuestDB is stopped.
    faults = Faults(stall_after_tick_responses=STALL_AFTER, stall_seconds=10)
    with TqSimServer(MarketConfig(**{**TQ_SIM_CONFIG, "password": TQ_SECRET, "faults": faults})) as srv:
        yield srv


def settings_of(server: QuestDBServer, password: str = QDB_SECRET) -> QuestDBSettings:
    return QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg, password=password,
                           connect_timeout_s=2, retry_timeout_s=2, request_timeout_s=10)


def env_resources(server: QuestDBServer, market) -> dict:
    return {
        "questdb": QuestDBResource(http_port=server.ports.http, pg_port=server.ports.pg,
                                   password=dg.EnvVar("QUESTDB_PASSWORD"), connect_timeout_s=2, retry_timeout_s=2),
        "tqsdk": TqSdkResource(user="sim", password=dg.EnvVar("TQSDK_PASSWORD"), backoff_s=0.2),
        "futures": FuturesSettings(start_date=str(market.cfg.start), now=SIM_NOW, schedule_source="continuous_table"),
    }


def test_questdb_password_is_enforced(secret_qdb: QuestDBServer) -> None:
    with pytest.raises(QuestDBError) as err, QuestDBClient(settings_of(secret_qdb, "quest")) as client:
        client.ping()
    assert "quest" not in str(err.value).replace("QuestDB", "")
    with QuestDBClient(settings_of(secret_qdb)) as client:
        assert client.ping()


def test_questdb_stopped_mid_ingest_reports_partitions_then_rerun_completes(
    secret_qdb: QuestDBServer, secret_tq: TqSimServer, tmp_path: Path, figures
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = settings_of(secret_qdb)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance, QuestDBClient(settings) as qdb:
        chain = Chain(secret_tq, instance, env_resources(secret_qdb, secret_tq.market), (VARIETY,)).prepare()
        days = chain.days[30:35]
        args = driver_args(settings, secret_tq, days[0], days[-1],
                           questdb_timeouts={"connect_timeout_s": 2, "retry_timeout_s": 2, "request_timeout_s": 10},
                           tqsdk={"download_timeout_s": 60, "retries": 2, "backoff_s": 0.2})
        proc = subprocess.Popen([sys.executable, "-m", "ghtrader_assets_tests.reliability.backfill_driver", args],
                                env=driver_env(secret_tq, home, tmp_path, QDB_SECRET, TQ_SECRET),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while not (secret_tq.stats["tick_responses"] >= STALL_AFTER and index_days(qdb, VARIETY, days) >= 1):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the backfill made no progress"
                time.sleep(0.2)
            done_before = index_days(qdb, VARIETY, days)
            qdb.close()
            secret_qdb.stop()  # while the run waits for the stalled download
            stopped = time.monotonic()
            out, err = proc.communicate(timeout=120)
            took = time.monotonic() - stopped
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        figures["faults"] += 1
        EVIDENCE["driver stdout"], EVIDENCE["driver stderr"] = out, err
        report = json.loads(out.strip().splitlines()[-1])
        assert not report["success"]
        message = report["failure"]
        # Told what and where: the failed partitions by key, and the unreachable server by address.
        assert "partitions failed" in message, message
        failed = [d for d in days if f"{d}|{VARIETY}" in message]
        assert failed and days[-1] in failed and len(failed) <= len(days) - done_before, message
        assert f"127.0.0.1:{secret_qdb.ports.http}" in message or f"127.0.0.1:{secret_qdb.ports.pg}" in message
        # Bounded: each partition gives up within the configured connect/retry timeouts.
        assert took < 20 + 10 * len(failed), took
        # The partitions finished before the outage stay materialized.
        assert len(instance.get_materialized_partitions(dg.AssetKey("day_index"))) >= done_before

        secret_qdb.start()  # same home, same ports
        result = chain.backfill(VARIETY, days[0], days[-1])
        assert result.success, failure_message(result)
        figures["rows_compared"] += assert_stored_equals_truth(qdb, chain.market, VARIETY, days)
        EVIDENCE["outage run instance"] = _instance_text(instance)  # audited by the secrets test


def _instance_text(instance: dg.DagsterInstance) -> str:
    """Everything the UI can show about the runs: event logs (messages, metadata, errors), run config,
    tags, and the job snapshot (resource config defaults are shown in the launchpad)."""
    parts = []
    for run in instance.get_runs():
        parts.append(json.dumps(run.run_config, default=str))
        parts.append(json.dumps(dict(run.tags)))
        for entry in instance.all_logs(run.run_id):
            parts.append(serialize_value(entry))
        if run.job_snapshot_id:
            parts.append(serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
    return "\n".join(parts)


def _files_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()
                     and p.suffix in (".jsonl", ".json", ".csv", ".log", ".txt", ".yaml", ""))


def test_secrets_never_appear_in_logs_metadata_config_or_summaries(
    secret_qdb: QuestDBServer, secret_tq: TqSimServer, ib_gateway_factory, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, figures,
) -> None:
    caplog.set_level(logging.DEBUG)
    if secret_qdb.pid is None:
        secret_qdb.start()
    texts: dict[str, str] = dict(EVIDENCE)
    with dg.instance_for_test() as instance:
        chain = Chain(secret_tq, instance, env_resources(secret_qdb, secret_tq.market), (VARIETY,)).prepare()
        day = chain.days[40]
        assert chain.backfill(VARIETY, day, day).success
        # a failing futures run too: errors are where connection strings leak
        chain.resources["questdb"] = QuestDBResource(http_port=secret_qdb.ports.http, pg_port=ServerPorts.free().pg,
                                                     password=dg.EnvVar("QUESTDB_PASSWORD"), connect_timeout_s=1)
        assert not chain.backfill(VARIETY, day, day).success
        # IBKR: a gateway whose managed account is a distinctive id, through the Dagster assets
        sim = ib_gateway_factory(symbols=("SPY",), account=IB_ACCOUNT, weekly_expiries=1, monthly_expiries=1)
        instance.add_dynamic_partitions("ibkr_symbol", ["SPY"])
        state = tmp_path / "ib"
        resources = {"ib_gateway": IBGatewayResource(host=sim.host, port=sim.port, client_id=31, client_msg_rate=0,
                                                     rate_per_s=2000.0, request_timeout_s=5.0),
                     "ibkr_storage": IBKRStorageResource(data_root=str(state / "raw"), state_dir=str(state / "state"))}
        end = {"config": {"end": SIM_AS_OF.isoformat()}}
        result = dg.materialize([ibkr_contracts, ibkr_hours_bars], partition_key="SPY", resources=resources,
                                instance=instance, run_config={"ops": {"ibkr_contracts": end, "ibkr_hours_bars": end}})
        assert result.success
        texts["instance"] = _instance_text(instance)
    texts["python logging"] = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    texts["ibkr files"] = _files_text(state)
    texts["questdb server log"] = secret_qdb.log_file.read_text(errors="replace")
    # the haystacks are the real ones: summaries written, the env var *names* shown where values would be
    assert '"symbol": "SPY"' in texts["ibkr files"] and "QUESTDB_PASSWORD" in texts["instance"]
    assert "cannot connect to QuestDB" in texts["instance"]  # the failing run is in the haystack
    leaks = [(secret, where) for where, text in texts.items() for secret in SECRETS if secret in text]
    figures["secret_haystacks_searched"] += len(texts)
    assert not leaks, leaks


def test_servers_and_simulators_bind_to_loopback_by_default() -> None:
    from ghtrader_assets.sim.ib import GatewayConfig

    assert QuestDBServer().host == "127.0.0.1"
    assert QuestDBSettings().host == "127.0.0.1"
    assert MarketConfig().host == "127.0.0.1"
    assert GatewayConfig().host == "127.0.0.1"
    assert IBGatewayResource().settings().host in ("127.0.0.1", os.environ.get("IB_HOST", "127.0.0.1"))
    script = (Path(__file__).parents[2] / "scripts" / "dagster-dev.sh")
    if script.exists():
        text = script.read_text()
        assert "0.0.0.0" not in text and "dagster dev" in text
        assert "-h 127.0.0.1" in text or "--host 127.0.0.1" in text


def test_questdb_down_before_a_run_fails_fast_naming_the_address(tq_sim: TqSimServer, figures) -> None:
    from ghtrader_assets_tests.fixtures.chain import resources

    ports = ServerPorts.free()
    qdb = QuestDBResource(http_port=ports.http, pg_port=ports.pg, connect_timeout_s=2, retry_timeout_s=2)
    with dg.instance_for_test() as instance:
        chain = Chain(tq_sim, instance, resources(qdb, tq_sim.market), (VARIETY,))
        for selection, kwargs in ((["trading_days"], {}), (["main_schedule"], {"partition_key": VARIETY})):
            started = time.monotonic()
            result = chain.materialize(selection, **kwargs)
            took = time.monotonic() - started
            figures["faults"] += 1
            assert not result.success
            assert f"cannot connect to QuestDB PGWire at 127.0.0.1:{ports.pg}" in failure_message(result)
            assert took < 15, took
