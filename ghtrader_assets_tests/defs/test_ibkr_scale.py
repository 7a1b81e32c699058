"""IBKR at scale against the gateway simulator: a weekend resume, latest-status reruns, minutes ground truth,
the outcome check, bounded discovery and the fast unreachable failure."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ghtrader_assets.defs.ibkr.assets import ibkr_contracts, ibkr_hours_bars
from ghtrader_assets.defs.ibkr.resources import IBGatewayResource, IBKRStorageResource
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.ibkr_cli import rerun_universe
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts
from ghtrader_assets.io.bar_store import bar_path
from ghtrader_assets.io.ib_gateway import GatewaySettings, GatewayUnavailableError, IBGatewaySession
from ghtrader_assets.io.ibkr_state import read_latest_cache, read_stage_records, write_universe
from ghtrader_assets.sim.ib import GatewaySim

SATURDAY = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
SIM = {"weekly_expiries": 1, "monthly_expiries": 1, "identical_window_s": 0.2}
FAST: dict[str, Any] = {"client_msg_rate": 0, "rate_per_s": 2000.0, "request_timeout_s": 5.0,
                        "pacing_backoff_s": 0.02, "reconnect_backoff_s": 0.02, "max_in_flight": 50}


def gateway(sim: GatewaySim, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(host=sim.host, port=sim.port, client_id=51, **{**FAST, **overrides})


@pytest.fixture
def paths(tmp_path: Path) -> StoragePaths:
    return StoragePaths(tmp_path / "raw", "scale", tmp_path / "state")


def test_saturday_run_killed_and_resumed_on_sunday_skips_every_ok_contract(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=("SPY",), as_of=SUNDAY, latency_s=0.01, **SIM)
    spy = [UniverseEntry("SPY")]
    assert run_contracts(spy, gateway(sim), paths, RunOptions(end=SATURDAY)).counts["OK"] == 1
    args = [sys.executable, "-m", "ghtrader_assets.cli", "ibkr", "hours", "--symbols", "SPY", "--host", sim.host,
            "--port", str(sim.port), "--client-id", "52", "--rate", "15", "--max-in-flight", "4", "--msg-rate", "0",
            "--end", SATURDAY.isoformat(), "--data-root", str(paths.data_root), "--scope", paths.scope,
            "--state-dir", str(paths.state_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _ok_count(paths) < 10:
        time.sleep(0.2)
    proc.kill()  # killed mid-run, Saturday
    proc.wait(10)
    saturday_ok = {r.conid for r in read_stage_records(paths.state_dir, "hours") if r.status is Status.OK}
    live = len(read_latest_cache(paths.cache_dir, "SPY")[1])
    assert 10 <= len(saturday_ok) < live
    sunday = run_bars("hours", spy, gateway(sim), paths, RunOptions(end=SUNDAY))
    skipped = {r.conid for r in read_stage_records(paths.state_dir, "hours")
               if r.run_id == sunday.run_id and r.status is Status.SKIPPED}
    requested = {r.conid for r in read_stage_records(paths.state_dir, "hours")
                 if r.run_id == sunday.run_id and r.status is not Status.SKIPPED}
    assert skipped == saturday_ok and not (requested & saturday_ok)
    assert sunday.counts["ERR"] == 0 and sunday.ok


def _ok_count(paths: StoragePaths) -> int:
    return sum(r.status is Status.OK for r in read_stage_records(paths.state_dir, "hours"))


def test_rerun_universe_after_a_later_success_lists_nothing_and_keeps_conids(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths, tmp_path: Path
) -> None:
    sim = ib_gateway_factory(symbols=("SPY", "AAPL"), hang_requests=(3, 7), **SIM)
    both = [UniverseEntry("SPY"), UniverseEntry("AAPL")]
    run_contracts(both, gateway(sim), paths, RunOptions(end=SUNDAY))
    first = run_bars("hours", both, gateway(sim, request_timeout_s=1.0), paths, RunOptions(end=SUNDAY))
    assert first.counts["ERR"] == 2
    failing = rerun_universe(paths.state_dir, "hours", [Status.ERR])
    assert failing and all(e.conid == sim.universe.stock(e.symbol).conid for e in failing)  # from discovery
    universe = write_universe(tmp_path / "u.csv", [UniverseEntry("SPY", 756733), UniverseEntry("AAPL", 265598)])
    assert {e.conid for e in rerun_universe(paths.state_dir, "hours", [Status.ERR], universe)} <= {756733, 265598}
    again = run_bars("hours", both, gateway(sim), paths, RunOptions(end=SUNDAY))
    assert again.counts["ERR"] == 0 and again.requests == first.counts["ERR"] + first.counts["EMPTY"]
    assert rerun_universe(paths.state_dir, "hours", [Status.ERR]) == ()
    # a symbol-level error (missing cache) is cleared by the symbol's later success
    cache = read_latest_cache(paths.cache_dir, "AAPL")[0]
    moved = cache.rename(cache.with_suffix(".off"))
    assert run_bars("hours", both, gateway(sim), paths, RunOptions(end=SUNDAY)).failed_symbols == ["AAPL"]
    assert [e.symbol for e in rerun_universe(paths.state_dir, "hours", [Status.ERR])] == ["AAPL"]
    moved.rename(cache)
    run_bars("hours", both, gateway(sim), paths, RunOptions(end=SUNDAY))
    assert rerun_universe(paths.state_dir, "hours", [Status.ERR]) == ()


def test_minutes_bars_equal_the_simulated_market(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=("AAPL", "SPY"), **SIM)
    entries = [UniverseEntry("AAPL"), UniverseEntry("SPY")]
    end = sim.config.now()
    run_contracts(entries, gateway(sim), paths, RunOptions(end=end))
    report = run_bars("minutes", entries, gateway(sim), paths, RunOptions(end=end))
    assert report.counts["ERR"] == 0 and report.counts["OK"] > 0
    checked = 0
    for record in read_stage_records(paths.state_dir, "minutes"):
        if record.purpose != "bars" or record.status is Status.SKIPPED:
            continue
        truth = sim.universe.bars(record.conid, "30 mins", "1 M", end)  # the simulated market itself
        if record.status is Status.EMPTY:
            assert truth == []
            continue
        frame = pl.read_parquet(bar_path(paths.data_root, paths.scope, record.symbol, record.conid, "TRADES",
                                         "30 mins"))
        assert frame["ts"].to_list() == [b.time for b in truth]
        assert frame["open"].to_list() == [b.open for b in truth]
        assert frame["high"].to_list() == [b.high for b in truth]
        assert frame["low"].to_list() == [b.low for b in truth]
        assert frame["close"].to_list() == [b.close for b in truth]
        assert frame["volume"].to_list() == [float(b.volume) for b in truth]
        checked += 1
    assert checked == report.counts["OK"]
    for symbol in ("AAPL", "SPY"):  # the reference is the last completed daily close
        assert report.symbols[symbol].reference_price == pytest.approx(
            sim.universe.close_on(symbol, end.date()), abs=0.005)


def test_bounded_discovery_qualifies_only_the_band_and_reports_requests(
    ib_gateway_factory: Callable[..., GatewaySim], paths: StoragePaths
) -> None:
    sim = ib_gateway_factory(symbols=("SPY",), weekly_expiries=6, monthly_expiries=9)
    bounds = DiscoveryBounds(moneyness=0.05, max_strikes=3, horizon_months=2)
    end = sim.config.now()
    report = run_contracts([UniverseEntry("SPY")], gateway(sim), paths, RunOptions(end=end), bounds)
    outcome = report.symbols["SPY"]
    contracts = read_latest_cache(paths.cache_dir, "SPY")[1]
    close = sim.universe.close_on("SPY", end.date())
    assert contracts and all(abs(c.strike / close - 1) <= 0.05 for c in contracts)
    assert len(contracts) < len(sim.universe.option_chain("SPY")) / 5
    assert outcome.candidates >= len(contracts) and outcome.discovery_requests == outcome.candidates + 3
    (record,) = [r for r in read_stage_records(paths.state_dir, "contracts") if r.status is Status.OK]
    assert record.requests == outcome.discovery_requests and record.elapsed_s > 0


def test_all_contracts_err_fails_the_partition_through_the_check(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path
) -> None:
    sim = ib_gateway_factory(symbols=("SPY",), **SIM)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("ibkr_symbol", ["SPY"])
    resources = {"ib_gateway": IBGatewayResource(host=sim.host, port=sim.port, client_id=53, pacing_retries=0,
                                                 **{k: v for k, v in FAST.items()}),
                 "ibkr_storage": IBKRStorageResource(data_root=str(tmp_path / "raw"), state_dir=str(tmp_path / "s"))}
    end = {"config": {"end": sim.config.now().isoformat()}}
    assert dg.materialize([ibkr_contracts], partition_key="SPY", resources=resources, instance=instance,
                          run_config={"ops": {"ibkr_contracts": end}}).success
    sim.start_pacing_storm(1_000_000)
    result = dg.materialize([ibkr_hours_bars], partition_key="SPY", resources=resources, instance=instance,
                            run_config={"ops": {"ibkr_hours_bars": end}}, raise_on_error=False)
    assert not result.success
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "outcome_shares"]
    assert not evaluation.passed and "ERR share 100.0%" in (evaluation.description or "")
    assert result.get_asset_materialization_events()  # the counts are recorded even though it failed


def test_unreachable_gateway_fails_within_the_configured_time() -> None:
    settings = GatewaySettings(port=1, reconnect_attempts=100, reconnect_backoff_s=0.5, unreachable_timeout_s=3.0)
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError, match="unreachable after"):
        IBGatewaySession.open(settings)
    assert time.monotonic() - started < 6
