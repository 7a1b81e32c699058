"""IBKR stages end to end against the gateway simulator: Dagster partitions, the sensor, faults, resume and rerun."""

from __future__ import annotations

import json
from datetime import timedelta
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.defs.ibkr import build_ibkr_defs
from ghtrader_assets.defs.ibkr.assets import ibkr_contracts, ibkr_hours_bars, ibkr_minutes_bars
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.defs.ibkr.sensors import ibkr_universe_sync
from ghtrader_assets.domain.bar_merge import BAR_SCHEMA
from ghtrader_assets.domain.contracts_cache import OptionContract
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.option_subset import near_the_money, unexpired
from ghtrader_assets.domain.latest_status import rerun_entries
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.ibkr_stages import RunOptions, StageReport, StoragePaths, SubsetSpec
from ghtrader_assets.io.bar_store import bar_path
from ghtrader_assets.io.ib_gateway import GatewaySettings
from ghtrader_assets.io.ibkr_state import read_latest_cache, read_stage_records, write_cache, write_universe
from ghtrader_assets.sim.demo import run_ibkr_demo
from ghtrader_assets.sim.ib import GatewaySim
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts

UNBOUNDED = DiscoveryBounds(unbounded=True)
TEN = ("AAPL", "MSFT", "SPY", "QQQ", "NVDA", "AMZN", "TSLA", "META", "GOOGL", "IWM")
# Small chains keep the suite fast; identical-request pacing is an IB rule for <= 30 s bars only.
SIM = {"weekly_expiries": 1, "monthly_expiries": 1, "identical_window_s": 0.2}
FAST: dict[str, Any] = {"client_msg_rate": 0, "rate_per_s": 2000.0, "request_timeout_s": 5.0,
                        "pacing_backoff_s": 0.02, "reconnect_backoff_s": 0.02, "max_in_flight": 50}


def gateway(sim: GatewaySim, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(host=sim.host, port=sim.port, client_id=21, **{**FAST, **overrides})


def entries(symbols: tuple[str, ...] = TEN) -> list[UniverseEntry]:
    return [UniverseEntry(s) for s in symbols]


def options(**kw: Any) -> RunOptions:
    return RunOptions(end=SIM_AS_OF, **kw)


def assert_matches_ground_truth(sim: GatewaySim, paths: StoragePaths, report: StageReport) -> int:
    """Every OK file equals the simulator's bars exactly (no bar lost or duplicated); every EMPTY
    contract truly has no bars. Returns the number of files checked."""
    latest = {r.conid: r for r in read_stage_records(paths.state_dir, report.stage)
              if r.purpose == "bars" and r.status is not Status.SKIPPED and r.conid is not None}
    checked = 0
    for conid, record in latest.items():
        truth = sim.universe.bars(conid, "8 hours", "6 M", SIM_AS_OF)
        if record.status is Status.EMPTY:
            assert truth == []
            continue
        assert record.status is Status.OK, record
        frame = pl.read_parquet(bar_path(paths.data_root, paths.scope, record.symbol, conid, "TRADES", "8 hours"))
        assert frame["ts"].to_list() == [b.time for b in truth]
        assert frame["close"].to_list() == [b.close for b in truth]
        assert frame["volume"].to_list() == [float(b.volume) for b in truth]
        checked += 1
    return checked


@pytest.fixture
def paths(tmp_path: Path) -> StoragePaths:
    return StoragePaths(tmp_path / "raw" / "ib", "test", tmp_path / "state")


def test_definitions_load_with_pool_and_partitions() -> None:
    dg.Definitions.validate_loadable(build_ibkr_defs())
    for asset in (ibkr_contracts, ibkr_hours_bars, ibkr_minutes_bars):
        assert asset.op.pool == "ibkr_gateway"
        assert isinstance(asset.partitions_def, dg.DynamicPartitionsDefinition)
        assert asset.partitions_def.name == "ibkr_symbol"


def test_sensor_keeps_partitions_in_step_with_the_file(tmp_path: Path) -> None:
    universe = tmp_path / "universe.csv"
    storage = IBKRStorageResource(universe_path=str(universe))
    instance = dg.DagsterInstance.ephemeral()

    def evaluate() -> Any:
        context = dg.build_sensor_context(instance=instance, resources={"ibkr_storage": storage})
        result = ibkr_universe_sync(context)
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(request.partitions_def_name, key)
        return result

    write_universe(universe, [UniverseEntry("AAPL", 265598), UniverseEntry("SPY")])
    assert isinstance(evaluate(), dg.SensorResult)
    assert sorted(instance.get_dynamic_partitions("ibkr_symbol")) == ["AAPL", "SPY"]
    universe.write_text("# shrink\nsymbol,conid\nspy,\nmsft,\n")
    evaluate()
    assert sorted(instance.get_dynamic_partitions("ibkr_symbol")) == ["MSFT", "SPY"]
    assert isinstance(evaluate(), dg.SkipReason)
    universe.write_text("symbol,conid\nSPY,notanumber\n")
    skip = evaluate()
    assert isinstance(skip, dg.SkipReason) and "conid" in (skip.skip_message or "")
    assert sorted(instance.get_dynamic_partitions("ibkr_symbol")) == ["MSFT", "SPY"]


def test_materialize_one_symbol_through_all_stages(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path
) -> None:
    sim = ib_gateway_factory(symbols=("AAPL", "MSFT"), **SIM)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ibkr_symbol", ["AAPL"])
    resources = {
        "ib_gateway": IBGatewayResource(host=sim.host, port=sim.port, client_id=5, **FAST),
        "ibkr_storage": IBKRStorageResource(data_root=str(tmp_path / "raw"), scope="test",
                                            state_dir=str(tmp_path / "state")),
    }
    end = {"config": {"end": SIM_AS_OF.isoformat()}}
    result = dg.materialize(
        [ibkr_contracts, ibkr_hours_bars, ibkr_minutes_bars], partition_key="AAPL", resources=resources,
        instance=instance,
        run_config={"ops": {"ibkr_contracts": end, "ibkr_hours_bars": end, "ibkr_minutes_bars": end}},
    )
    assert result.success
    by_asset = {e.materialization.asset_key.path[-1]: e.materialization.metadata
                for e in result.get_asset_materialization_events()}
    hours, minutes = by_asset["ibkr_hours_bars"], by_asset["ibkr_minutes_bars"]
    assert hours["count_err"].value == 0 and hours["count_ok"].value > 0
    assert minutes["requests"].value < hours["requests"].value
    assert minutes["reference_source"].value == "underlying close"
    summary = tmp_path / "state" / "run_logs" / "hours" / f"summary_{result.run_id}.jsonl"
    first = json.loads(summary.read_text().splitlines()[0])
    assert first["status"] in ("OK", "EMPTY") and first["symbol"] == "AAPL"
    files = sorted((tmp_path / "raw" / "historical_bars_test" / "AAPL").glob("*/TRADES/8_hours.parquet"))
    assert len(files) == hours["files"].value
    frame = pl.read_parquet(files[0])
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert frame["ts"].is_sorted() and frame["ts"].is_unique().all()


def test_missing_and_malformed_cache_fail_the_partition_with_the_file_named(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path
) -> None:
    sim = ib_gateway_factory(symbols=("AAPL", "MSFT"), **SIM)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ibkr_symbol", ["AAPL", "MSFT"])
    cache_dir = tmp_path / "state" / "contracts_cache"
    cache_dir.mkdir(parents=True)
    (cache_dir / "MSFT_2026-11-20.json").write_text('[{"conid": 1, "symbol": "MSFT"}]')
    resources = {
        "ib_gateway": IBGatewayResource(host=sim.host, port=sim.port, client_id=6, **FAST),
        "ibkr_storage": IBKRStorageResource(data_root=str(tmp_path / "raw"), state_dir=str(tmp_path / "state")),
    }
    for symbol, problem in (("AAPL", "AAPL_YYYY-MM-DD.json: missing contracts cache"),
                            ("MSFT", "MSFT_2026-11-20.json: record 0: missing field(s) expiry, right, strike")):
        result = dg.materialize([ibkr_hours_bars], partition_key=symbol, resources=resources, instance=instance,
                                raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert problem in str(failure.event_specific_data)
        (record,) = [r for r in read_stage_records(tmp_path / "state", "hours") if r.symbol == symbol]
        assert (record.status, record.purpose) == (Status.ERR, "symbol") and problem in (record.error_message or "")


def test_ten_symbols_hours_every_contract_ok_or_stated_reason(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=TEN, **SIM)
    # the whole listed chain (unbounded discovery), so every simulated contract is compared with the truth
    assert run_contracts(entries(), gateway(sim), paths, options(), UNBOUNDED).counts["OK"] == 10
    report = run_bars("hours", entries(), gateway(sim), paths, options())
    assert not report.failed_symbols and report.counts["ERR"] == 0
    chain = sum(len(sim.universe.option_chain(s)) for s in TEN)
    assert report.counts["OK"] + report.counts["EMPTY"] == report.requests == chain
    for record in read_stage_records(paths.state_dir, "hours"):
        assert record.status is Status.OK or (record.error_code == 162 and "no data" in (record.error_message or ""))
    assert assert_matches_ground_truth(sim, paths, report) == report.counts["OK"]
    again = run_bars("hours", entries(), gateway(sim), paths, options())
    assert again.counts["SKIPPED"] == report.counts["OK"] and again.requests == report.counts["EMPTY"]


def test_gateway_drop_mid_run_loses_and_duplicates_nothing(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=TEN[:4], drop_after_requests=150, latency_s=0.002, **SIM)
    run_contracts(entries(TEN[:4]), gateway(sim), paths, options())
    report = run_bars("hours", entries(TEN[:4]), gateway(sim), paths, options())
    assert (report.gateway.disconnects, report.gateway.reconnects) == (1, 1)
    assert report.counts["ERR"] == 0
    assert assert_matches_ground_truth(sim, paths, report) == report.counts["OK"]


def test_drop_without_reissue_is_err_then_rerun_from_summary_fills_the_gap(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    symbols = TEN[:4]
    sim = ib_gateway_factory(symbols=symbols, drop_after_requests=150, latency_s=0.002, **SIM)
    run_contracts(entries(symbols), gateway(sim), paths, options())
    first = run_bars("hours", entries(symbols), gateway(sim, request_attempts=1), paths, options())
    failed = [r for r in read_stage_records(paths.state_dir, "hours") if r.status is Status.ERR]
    assert failed and all((r.error_message or "").startswith("disconnected") for r in failed)
    args = ["ibkr", "hours", "--rerun-from", str(first.summary_path), "--host", sim.host, "--port", str(sim.port),
            "--client-id", "23", "--rate", "2000", "--end", SIM_AS_OF.isoformat(), "--data-root",
            str(paths.data_root), "--scope", paths.scope, "--state-dir", str(paths.state_dir), "--json"]
    assert cli_main(args) == 0
    latest = read_stage_records(paths.state_dir, "hours")
    rerun = [r for r in latest if r.run_id != first.run_id and r.purpose == "bars" and r.status is not Status.SKIPPED]
    # only the failed contracts (EMPTY ones too) were requested again
    assert {r.conid for r in failed} <= {r.conid for r in rerun}
    assert all(r.status is not Status.OK or r.conid in {f.conid for f in failed} for r in rerun)
    assert assert_matches_ground_truth(sim, paths, first) > 0


def test_pacing_storm_then_rerun_list_completes_without_gaps(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths, tmp_path: Path
) -> None:
    sim = ib_gateway_factory(symbols=TEN[:4], pacing_storm=(60, 120), **SIM)
    run_contracts(entries(TEN[:4]), gateway(sim), paths, options())
    first = run_bars("hours", entries(TEN[:4]), gateway(sim, pacing_retries=1), paths, options())
    assert first.counts["ERR"] > 0 and first.gateway.pacing_violations > 0
    records = read_stage_records(paths.state_dir, "hours")
    assert all("pacing violation never cleared" in (r.error_message or "") for r in records if r.status is Status.ERR)
    assert rerun_entries(records)
    code = cli_main(["ibkr", "rerun-universe", "--stage", "hours", "--state-dir", str(paths.state_dir),
                     "--status", "ERR", "--out", str(tmp_path / "rerun.csv")])
    assert code == 0
    args = ["ibkr", "hours", "--universe", str(tmp_path / "rerun.csv"), "--host", sim.host, "--port", str(sim.port),
            "--client-id", "22", "--rate", "2000", "--max-in-flight", "50", "--end", SIM_AS_OF.isoformat(),
            "--data-root", str(paths.data_root), "--scope", paths.scope, "--state-dir", str(paths.state_dir)]
    assert cli_main(args) == 0
    assert read_stage_records(paths.state_dir, "hours")[-1].status is not Status.ERR
    assert assert_matches_ground_truth(sim, paths, first) > 0
    assert not [r for r in rerun_entries(read_stage_records(paths.state_dir, "hours"), [Status.ERR])]


def test_minutes_requests_shrink_by_the_subset_ratio(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    symbols = TEN[:3]
    sim = ib_gateway_factory(symbols=symbols, **SIM)
    run_contracts(entries(symbols), gateway(sim), paths, options())
    hours = run_bars("hours", entries(symbols), gateway(sim), paths, options())
    minutes = run_bars("minutes", entries(symbols), gateway(sim), paths, options(), subset=SubsetSpec(2, 3))
    expected = 0
    for symbol in symbols:
        live = unexpired(read_latest_cache(paths.cache_dir, symbol)[1], SIM_AS_OF)
        close = sim.universe.close_on(symbol, SIM_AS_OF.date())
        assert minutes.symbols[symbol].reference_price == pytest.approx(close, abs=0.005)  # IB rounds to cents
        expected += len(near_the_money(live, SIM_AS_OF, close, 2, 3))
    bar_requests = minutes.counts["OK"] + minutes.counts["EMPTY"] + minutes.counts["ERR"]
    assert bar_requests == expected == 3 * 2 * 2 * 3
    assert minutes.requests == expected + len(symbols)  # plus one underlying close per symbol
    assert bar_requests / hours.requests == pytest.approx(expected / hours.requests)
    assert bar_requests < hours.requests
    assert minutes.counts["EMPTY"] < hours.counts["EMPTY"]


def test_corrupt_file_is_moved_aside_on_rerun(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=("SPY",), **SIM)
    run_contracts(entries(("SPY",)), gateway(sim), paths, options())
    report = run_bars("hours", entries(("SPY",)), gateway(sim), paths, options())
    target = Path(report.symbols["SPY"].paths[0])
    target.write_bytes(b"PAR1 truncated")
    again = run_bars("hours", entries(("SPY",)), gateway(sim), paths, options(force=True))
    assert again.counts["ERR"] == 0
    notes = [r.error_message for r in read_stage_records(paths.state_dir, "hours")
             if r.output_path == str(target) and r.run_id == again.run_id]
    assert notes and "moved aside" in (notes[0] or "")
    assert list(target.parent.glob("8_hours.parquet.corrupt-*"))
    assert pl.read_parquet(target).height > 0


def test_cli_dry_run_and_batches(paths: StoragePaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    universe = write_universe(tmp_path / "u.csv", entries())
    base = ["ibkr", "hours", "--universe", str(universe), "--dry-run", "--state-dir", str(paths.state_dir), "--json"]
    seen: list[str] = []
    for index in range(3):
        assert cli_main([*base, "--batch-count", "3", "--batch-index", str(index)]) == 1  # no caches yet
        out = json.loads(capsys.readouterr().out)
        seen += out["failed_symbols"]
        assert out["dry_run"] and out["requests"] == 0
    assert sorted(seen) == sorted(TEN)
    assert not (paths.state_dir / "run_logs").exists()
    assert cli_main(["ibkr", "hours", "--symbols", "aapl", "--max-in-flight", "51", "--dry-run"]) == 2


def test_unknown_symbol_and_stale_cache_are_symbol_errors(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=("SPY",), **SIM)
    report = run_contracts(entries(("ZZZZ",)), gateway(sim), paths, options())
    assert report.failed_symbols == ["ZZZZ"] and "does not know the stock" in (report.symbols["ZZZZ"].error or "")
    stale = write_cache(paths.cache_dir, "SPY", SIM_AS_OF.date(),  # IB stopped serving it at the end of Thursday
                        [OptionContract(1, "SPY", SIM_AS_OF.date() - timedelta(days=1), "C", 500.0)])
    hours = run_bars("hours", entries(("SPY",)), gateway(sim), paths, options())
    assert hours.failed_symbols == ["SPY"]
    assert f"{stale}: every contract has expired" in (hours.symbols["SPY"].error or "")
    sim.stop()
    down = run_contracts(entries(("SPY",)), gateway(sim, reconnect_attempts=1), paths, options(force=True))
    assert down.failed_symbols == ["SPY"] and "unreachable after 1 attempts" in (down.symbols["SPY"].error or "")
    assert down.counts["ERR"] == 1


def test_demo_function_runs_all_three_stages(ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path) -> None:
    sim = ib_gateway_factory(symbols=("AAPL", "SPY"), **SIM)
    counts = run_ibkr_demo(sim.host, sim.port, symbols=("AAPL", "SPY"), root=tmp_path / "raw", state=tmp_path / "st",
                           end=SIM_AS_OF, settings=GatewaySettings(**FAST))
    assert counts["ERR"] == 0 and counts["OK"] > 2 and set(counts) == {"OK", "EMPTY", "ERR", "SKIPPED"}
    assert (tmp_path / "raw" / "historical_bars_demo" / "SPY").is_dir()


def test_weekend_schedule_requests_one_run_per_universe_symbol() -> None:
    from datetime import datetime, timezone

    from ghtrader_assets.defs.ibkr.schedules import ibkr_weekend

    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 11, 21, 11, 0, tzinfo=timezone.utc)) as context:
            assert isinstance(ibkr_weekend(context), dg.SkipReason)
        instance.add_dynamic_partitions("ibkr_symbol", ["MSFT", "AAPL"])
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 11, 21, 11, 0, tzinfo=timezone.utc)) as context:
            requests = ibkr_weekend(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [("AAPL", "2026-11-21|AAPL"), ("MSFT", "2026-11-21|MSFT")]
    assert ibkr_weekend.cron_schedule == "0 6 * * 6" and ibkr_weekend.execution_timezone == "America/New_York"
