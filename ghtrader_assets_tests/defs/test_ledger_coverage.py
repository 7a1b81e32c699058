"""The ledger end to end (real tqsdk against the simulator, real QuestDB, a real Dagster instance): a variety
listed mid-window is backfilled from its first day; a day retired by hand and a day whose Dagster records were
wiped are told apart by coverage; the gap fill downloads exactly what is missing; a corrupted row is found by
the re-verification and repaired by the next fill; a manifest verifies, and stops verifying after a corruption."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.defs.futures.ledger_assets import build_ledger_assets
from ghtrader_assets.defs.futures.resources import FuturesSettings, TqSdkResource
from ghtrader_assets.defs.futures.sensors import build_gap_fill_sensor
from ghtrader_assets.domain.calendar import CST
from ghtrader_assets.domain.ledger import DayState
from ghtrader_assets.futures import ledger as ledger_step
from ghtrader_assets.io import ledger_store as ledger
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_schema import MAIN_L5_TICKS
from ghtrader_assets.sim.tq import MarketConfig, TqSimServer
from ghtrader_assets_tests.fixtures.tq_sim import tq_env
from ghtrader_assets_tests.fixtures.chain import Chain, failure_message, materializations, questdb_resource

VARIETIES = ("SHFE.ni", "GFEX.lc")
START, END = date(2024, 2, 19), date(2024, 3, 15)
LISTED = date(2024, 3, 4)  # GFEX.lc's first trading day: the vendor's mapping starts here
NOW = datetime(2024, 3, 15, 19, 0)  # Beijing: every day of the window has closed


@pytest.fixture(scope="module")
def chain(questdb_settings: QuestDBSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    cfg = MarketConfig(seed=5, start=START, end=END, varieties=("SHFE.ni", "GFEX.lc"), density=0.02, far_density=0.005,
                       now=NOW, listings=(("GFEX.lc", LISTED),))
    manifests = tmp_path_factory.mktemp("manifests")
    resources = {"questdb": questdb_resource(questdb_settings),
                 "tqsdk": TqSdkResource(user="sim", password="sim", backoff_s=0.2),
                 "futures": FuturesSettings(start_date=str(START), now=NOW.replace(tzinfo=CST).isoformat(),
                                            schedule_source="continuous_table", manifest_dir=str(manifests))}
    with TqSimServer(cfg) as srv, dg.instance_for_test() as instance:
        run = Chain(srv, instance, resources, VARIETIES)
        run.assets += build_ledger_assets(VARIETIES)
        run.prepare()
        run.days = [d for d in run.days if d <= END]
        run.results = {v: run.backfill(v, run.days[0], run.days[-1]) for v in VARIETIES}  # type: ignore[attr-defined]
        yield run


def report(chain: Chain, qdb: QuestDBClient, variety: str):
    calendar = ledger.read_calendar(qdb)
    [result] = ledger_step.coverage_report(qdb, [variety], calendar, START, END, NOW.replace(tzinfo=CST))
    return result.coverage


def fill(chain: Chain) -> list[dg.RunRequest]:
    """Request a fill through the UI's path (futures_coverage with fill: true, then the sensor), run what the
    sensor asks for and record its view repairs, as the daemon would."""
    result = chain.materialize(["futures_coverage"], run_config={"ops": {"futures_coverage": {"config": {
        "start": str(START), "end": str(END), "fill": True, "write_manifests": False}}}})
    assert result.success, failure_message(result)
    with dg.build_sensor_context(instance=chain.instance, resources=chain.resources,
                                 cursor=getattr(chain, "fill_cursor", None)) as context:
        answer = build_gap_fill_sensor(VARIETIES)(context)
    chain.fill_cursor = answer.cursor  # type: ignore[attr-defined]
    for request in answer.run_requests:
        done = chain.materialize([k.to_user_string() for k in request.asset_selection], tags=request.tags)
        assert done.success, failure_message(done)
    for event in answer.asset_events:
        chain.instance.report_runless_asset_event(event)
    return list(answer.run_requests)


def test_a_variety_listed_mid_window_starts_at_its_first_day(chain: Chain, qdb: QuestDBClient) -> None:
    assert all(r.success for r in chain.results.values()), [failure_message(r) for r in chain.results.values()]  # type: ignore[attr-defined]
    window = ledger.read_windows(qdb)["GFEX.lc"]
    assert (window.first_day, window.window_source) == (LISTED, "vendor")
    meta = materializations(chain.results["GFEX.lc"], "main_l5")  # type: ignore[attr-defined]
    assert [d for d in chain.days if meta[f"{d}|GFEX.lc"].get("listed") is False] == [d for d in chain.days if d < LISTED]
    assert all(not contract.startswith("GFEX.lc") or day >= LISTED for contract, day in chain.srv.downloads)
    cov = report(chain, qdb, "GFEX.lc")
    assert cov.clean and cov.not_listed == len([d for d in chain.days if d < LISTED])
    assert cov.count(DayState.COMPLETE) == len([d for d in chain.days if d >= LISTED])


def test_coverage_finds_a_day_retired_by_hand_and_the_fill_downloads_only_it(
    chain: Chain, qdb: QuestDBClient, capsys: pytest.CaptureFixture
) -> None:
    retired, wiped = chain.days[4], chain.days[9]
    qdb.execute(f"UPDATE {MAIN_L5_TICKS.name} SET symbol = '~KQ.m@SHFE.ni' WHERE symbol = 'KQ.m@SHFE.ni' "
                f"AND trading_day = '{retired}'")
    qdb.wait_for_wal(MAIN_L5_TICKS)
    # Dagster's records of the tick assets wiped (this instance's storage wipes whole assets, not partitions)
    chain.instance.wipe_assets([dg.AssetKey(a) for a in ("underlying_ticks", "main_l5", "day_index")])
    cov = report(chain, qdb, "SHFE.ni")
    assert [(s.day, s.state) for s in cov.statuses if s.state not in (DayState.COMPLETE,)] == [(retired, DayState.STALE)]
    assert f"{wiped}|SHFE.ni" not in chain.instance.get_materialized_partitions(dg.AssetKey("day_index"))
    before = dict(chain.srv.downloads)
    requests = fill(chain)
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in requests] == [(f"{retired}|SHFE.ni", f"{retired}|SHFE.ni")]
    new = {k: v - before.get(k, 0) for k, v in chain.srv.downloads.items() if v != before.get(k, 0)}
    assert new == {(chain.market.main_contract("SHFE.ni", retired), retired): 1}  # exactly the retired day
    assert report(chain, qdb, "SHFE.ni").clean
    view = chain.instance.get_materialized_partitions(dg.AssetKey("day_index"))  # Dagster's view, from the ledger
    assert {f"{d}|SHFE.ni" for d in chain.days} <= view and {f"{d}|GFEX.lc" for d in chain.days if d >= LISTED} <= view


def test_a_corrupted_row_is_found_by_verification_and_repaired_by_the_next_fill(chain: Chain, qdb: QuestDBClient) -> None:
    day = chain.days[12]
    manifest_path, _ = ledger_step.write_manifest(qdb, ledger.read_calendar(qdb), "SHFE.ni", chain.days[-1],
                                                  NOW.replace(tzinfo=CST), Path(chain.resources["futures"].manifest_dir))
    assert ledger_step.verify_manifest(qdb, ledger.read_calendar(qdb), manifest_path) == []
    first = qdb.scalar(f"SELECT min(datetime_ns) FROM {MAIN_L5_TICKS.name} WHERE symbol = 'KQ.m@SHFE.ni' "
                       f"AND trading_day = '{day}'")
    qdb.execute(f"UPDATE {MAIN_L5_TICKS.name} SET last_price = last_price + 10 WHERE symbol = 'KQ.m@SHFE.ni' "
                f"AND trading_day = '{day}' AND datetime_ns = {first} AND seq = 0")  # one row's price
    qdb.wait_for_wal(MAIN_L5_TICKS)
    changed = ledger_step.verify_manifest(qdb, ledger.read_calendar(qdb), manifest_path)
    assert changed and changed[0].startswith("index_digest")
    result = chain.materialize(["history_verification"], partition_key="SHFE.ni")
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["history_matches_index"]
    assert not check.passed and [m.split(" ")[1].rstrip(":") for m in check.metadata["mismatches"].value] == [str(day)]
    stale = [s for s in report(chain, qdb, "SHFE.ni").statuses if s.state == DayState.STALE]
    assert [(s.day, s.cause) for s in stale] == [(day, "verification")]
    before = dict(chain.srv.downloads)
    fill(chain)
    assert sum(chain.srv.downloads.values()) - sum(before.values()) == 1
    assert report(chain, qdb, "SHFE.ni").clean
    assert ledger_step.verify_manifest(qdb, ledger.read_calendar(qdb), manifest_path) == []  # repaired: matches again


def test_the_coverage_command_reports_and_exits_by_the_ledger(chain: Chain, qdb: QuestDBClient, monkeypatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    settings = qdb.settings
    monkeypatch.setenv("QUESTDB_HOST", settings.host)
    monkeypatch.setenv("QUESTDB_HTTP_PORT", str(settings.http_port))
    monkeypatch.setenv("QUESTDB_PG_PORT", str(settings.pg_port))
    monkeypatch.setenv("GHTRADER_VARIETIES", "SHFE.ni,GFEX.lc")
    monkeypatch.setenv("GHTRADER_START_DATE", str(START))
    monkeypatch.setenv("GHTRADER_NOW", NOW.replace(tzinfo=CST).isoformat())
    assert ledger_cli_main(["coverage", "--to", str(END), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(v["variety"], v["missing"], v["stale"]) for v in out] == [("SHFE.ni", 0, 0), ("GFEX.lc", 0, 0)]
    qdb.execute(f"UPDATE {MAIN_L5_TICKS.name} SET symbol = '~KQ.m@GFEX.lc' WHERE symbol = 'KQ.m@GFEX.lc' "
                f"AND trading_day = '{chain.days[-1]}'")
    qdb.wait_for_wal(MAIN_L5_TICKS)
    assert ledger_cli_main(["coverage", "GFEX.lc", "--to", str(END)]) == 1
    assert f"stale: {chain.days[-1]}" in capsys.readouterr().out
    assert ledger_cli_main(["coverage", "DCE.zz"]) == 2
    with tq_env(chain.srv):
        assert ledger_cli_main(["coverage", "GFEX.lc", "--to", str(END), "--fill", "--dry-run"]) == 1
    assert f"fill: GFEX.lc {chain.days[-1]}..{chain.days[-1]} (1 days)" in capsys.readouterr().out


def ledger_cli_main(argv: list[str]) -> int:
    from ghtrader_assets.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse and the unknown-variety error
        return int(exc.code or 0)

