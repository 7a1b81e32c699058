"""`ghtrader-assets doctor` against a real QuestDB and the two simulators: all pass, then each failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.doctor.ib_checks import farm_check
from ghtrader_assets.doctor.report import Status
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, ServerPorts, free_ports
from ghtrader_assets.sim.ib.config import FARM_BROKEN
from ghtrader_assets.sim.tq import MarketConfig, TqSimServer
from ghtrader_assets_tests.fixtures.tq_sim import tq_env

pytestmark = [pytest.mark.questdb, pytest.mark.timeout(120)]

QDB_PASSWORD = "qdb-doctor-pw-4711"  # distinctive, so the test can tell it never reaches the output
TQ_PASSWORD = "tq-doctor-pw-0815"
# A month of one variety: the simulator builds it in milliseconds.
TQ_CONFIG = dict(start=date(2024, 3, 1), end=date(2024, 3, 29), varieties=("SHFE.cu",), density=0.02,
                 far_density=0.01, username="doctor", password=TQ_PASSWORD)


@pytest.fixture(scope="module")
def doctor_qdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuestDBSettings]:
    """An own server: dev mode (so a test can suspend a WAL table) and non-default credentials for PGWire
    (pg.user/pg.password) and HTTP basic auth (http.user/http.password), both from QUESTDB_USER/PASSWORD."""
    config = {"QDB_DEV_MODE_ENABLED": "true", "QDB_PG_PASSWORD": QDB_PASSWORD,
              "QDB_HTTP_USER": "admin", "QDB_HTTP_PASSWORD": QDB_PASSWORD,
              # the health endpoint the server start waits on asks for no credentials
              "QDB_HTTP_HEALTH_CHECK_AUTHENTICATION_REQUIRED": "false"}
    with pytest.MonkeyPatch.context() as patch:  # the server process inherits the environment
        for key, value in config.items():
            patch.setenv(key, value)
        server = QuestDBServer(home=Path(tmp_path_factory.mktemp("doctor-qdb")), ports=ServerPorts.free()).start()
    settings = QuestDBSettings(http_port=server.ports.http, pg_port=server.ports.pg, password=QDB_PASSWORD)
    try:
        with QuestDBClient(settings) as client:
            client.bootstrap()
        yield settings
    finally:
        server.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, doctor_qdb: QuestDBSettings) -> pytest.MonkeyPatch:
    """The environment a deployment would have, pointing at the test's servers."""
    for key, value in {"QUESTDB_HOST": doctor_qdb.host, "QUESTDB_HTTP_PORT": str(doctor_qdb.http_port),
                       "QUESTDB_PG_PORT": str(doctor_qdb.pg_port), "QUESTDB_USER": "admin",
                       "QUESTDB_PASSWORD": QDB_PASSWORD, "TQSDK_USER": "doctor", "TQSDK_PASSWORD": TQ_PASSWORD,
                       "GHTRADER_START_DATE": "2024-03-01", "GHTRADER_NOW": "2024-03-29T17:00:00+08:00"}.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def doctor_lines(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str]]:
    """Exit code and {check name: its line} of one run; the output never holds a password."""
    code = cli_main(["doctor", "--timeout", "2", *args])
    out = capsys.readouterr().out
    assert QDB_PASSWORD not in out and TQ_PASSWORD not in out
    return code, {line.split()[1]: line for line in out.splitlines()}


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str]]:
    """Exit code and {check name: OK | FAIL | SKIP} of one run."""
    code, lines = doctor_lines(capsys, *args)
    return code, {name: line.split()[0] for name, line in lines.items()}


@pytest.fixture
def tq_server() -> Iterator[TqSimServer]:
    with TqSimServer(MarketConfig(**TQ_CONFIG)) as srv, tq_env(srv):
        yield srv


def test_everything_passes(env: pytest.MonkeyPatch, tq_server: TqSimServer, ib_gateway,
                           capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("IB_HOST", ib_gateway.host)
    env.setenv("IB_PORT", str(ib_gateway.port))
    code, statuses = doctor(capsys)
    assert statuses == {name: "OK" for name in (
        "questdb.http", "questdb.pgwire", "questdb.schema", "questdb.wal", "tqsdk.login", "tqsdk.tq_dl",
        "tqsdk.calendar", "tqsdk.cont_table", "ib.connect", "ib.farms")}
    assert code == 0


def test_questdb_down(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    http, pg = free_ports(2)
    env.setenv("QUESTDB_HTTP_PORT", str(http))
    env.setenv("QUESTDB_PG_PORT", str(pg))
    code, statuses = doctor(capsys, "--only", "questdb")
    assert statuses == {"questdb.http": "FAIL", "questdb.pgwire": "FAIL", "questdb.schema": "SKIP",
                        "questdb.wal": "SKIP"}
    assert code == 1


def test_questdb_wrong_password(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("QUESTDB_PASSWORD", "quest")  # the default, which this server no longer accepts
    code, statuses = doctor(capsys, "--only", "questdb")
    assert (statuses["questdb.http"], statuses["questdb.pgwire"], code) == ("FAIL", "FAIL", 1)


@pytest.mark.parametrize(("damage", "reported"), [
    ("DROP TABLE ghtrader_no_data_days_v2", "missing tables: ghtrader_no_data_days_v2"),
    ("ALTER TABLE ghtrader_no_data_days_v2 DROP COLUMN attempts", "ghtrader_no_data_days_v2 lacks attempts"),
])
def test_schema_missing(env: pytest.MonkeyPatch, doctor_qdb: QuestDBSettings, capsys: pytest.CaptureFixture[str],
                        damage: str, reported: str) -> None:
    with QuestDBClient(doctor_qdb) as client:
        client.execute(damage)
        if damage.startswith("ALTER"):  # a WAL table applies ALTER asynchronously
            client.wait_for_wal("ghtrader_no_data_days_v2")
        try:
            code, lines = doctor_lines(capsys, "--only", "questdb")
        finally:
            client.bootstrap()
    assert lines["questdb.schema"].startswith(f"FAIL  questdb.schema    {reported}")
    assert "bootstraps" in lines["questdb.schema"] and code == 1


def test_suspended_wal_table(env: pytest.MonkeyPatch, doctor_qdb: QuestDBSettings,
                             capsys: pytest.CaptureFixture[str]) -> None:
    with QuestDBClient(doctor_qdb) as client:
        client.execute("ALTER TABLE ghtrader_sessions_v2 SUSPEND WAL")  # dev mode only
        try:
            code, lines = doctor_lines(capsys, "--only", "questdb")
        finally:
            client.execute("ALTER TABLE ghtrader_sessions_v2 RESUME WAL")
    wal = lines["questdb.wal"]
    assert wal.startswith("FAIL") and "ghtrader_sessions_v2" in wal and "RESUME WAL" in wal and code == 1


def test_tqsdk_wrong_password(env: pytest.MonkeyPatch, tq_server: TqSimServer,
                              capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("TQSDK_PASSWORD", "not-the-password")
    code, lines = doctor_lines(capsys, "--only", "tqsdk")
    assert not any("not-the-password" in line for line in lines.values())
    assert lines["tqsdk.login"].startswith("FAIL") and "TQSDK_USER/TQSDK_PASSWORD" in lines["tqsdk.login"]
    others = [lines[name].split()[0] for name in ("tqsdk.tq_dl", "tqsdk.calendar", "tqsdk.cont_table")]
    assert others == ["SKIP", "SKIP", "OK"]
    assert code == 1


def test_tqsdk_account_without_tick_grant(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    features = tuple(f for f in MarketConfig.features if f != "tq_dl")
    with TqSimServer(MarketConfig(**TQ_CONFIG, features=features)) as srv, tq_env(srv):
        code, statuses = doctor(capsys, "--only", "tqsdk")
    assert statuses == {"tqsdk.login": "OK", "tqsdk.tq_dl": "FAIL", "tqsdk.calendar": "OK",
                        "tqsdk.cont_table": "OK"}
    assert code == 1


def test_tqsdk_server_down_fails_fast(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    for key in ("TQ_AUTH_URL", "TQ_CHINESE_HOLIDAY_URL", "TQ_CONT_TABLE_URL"):
        env.setenv(key, f"http://127.0.0.1:{port}/x")
    env.setenv("TQ_MD_URL", f"ws://127.0.0.1:{port}/t/md/front/mobile")
    code, statuses = doctor(capsys, "--only", "tqsdk")
    assert statuses == {"tqsdk.login": "FAIL", "tqsdk.tq_dl": "SKIP", "tqsdk.calendar": "SKIP",
                        "tqsdk.cont_table": "FAIL"}
    assert code == 1


def test_tqsdk_without_credentials_is_skipped(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.delenv("TQSDK_USER")
    code, statuses = doctor(capsys, "--only", "tqsdk")
    assert (statuses, code) == ({"tqsdk": "SKIP"}, 0)


def test_ib_gateway_unreachable(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)
    env.setenv("IB_HOST", "127.0.0.1")
    env.setenv("IB_PORT", str(port))
    code, statuses = doctor(capsys, "--only", "ib")
    assert (statuses, code) == ({"ib.connect": "FAIL", "ib.farms": "SKIP"}, 1)


def test_ib_farms_broken(env: pytest.MonkeyPatch, ib_gateway_factory, capsys: pytest.CaptureFixture[str]) -> None:
    sim = ib_gateway_factory(farm_status=FARM_BROKEN)
    env.setenv("IB_HOST", sim.host)
    env.setenv("IB_PORT", str(sim.port))
    code, lines = doctor_lines(capsys, "--only", "ib")
    assert lines["ib.connect"].startswith("OK") and lines["ib.farms"].startswith("FAIL")
    assert all(farm in lines["ib.farms"] for farm in ("usfarm", "ushmds", "secdefnj")) and code == 1


def test_ib_client_id_in_use(env: pytest.MonkeyPatch, ib_gateway, capsys: pytest.CaptureFixture[str]) -> None:
    from ib_insync import IB

    env.setenv("IB_HOST", ib_gateway.host)
    env.setenv("IB_PORT", str(ib_gateway.port))
    env.setenv("IB_CLIENT_ID", "5")
    other = IB()
    other.connect(ib_gateway.host, ib_gateway.port, clientId=5, timeout=5, readonly=True)
    try:
        code, lines = doctor_lines(capsys, "--only", "ib")
    finally:
        other.disconnect()
    assert "client id 5 is in use" in lines["ib.connect"] and "IB_CLIENT_ID" in lines["ib.connect"] and code == 1


def test_farm_state_is_the_latest_message_per_farm() -> None:
    recovered = farm_check([(2103, "Market data farm connection is broken:usfarm"),
                            (2104, "Market data farm connection is OK:usfarm")])
    assert recovered.status is Status.OK
    assert farm_check([]).status is Status.FAIL


def test_skip_and_only_choose_sections(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, statuses = doctor(capsys, "--skip", "tqsdk", "--skip", "ib")
    assert set(statuses) == {"questdb.http", "questdb.pgwire", "questdb.schema", "questdb.wal"}
    assert code == 0
