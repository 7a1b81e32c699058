"""A simulated month (four weekends, weekly, monthly and Mon/Wed daily expiries, a moving clock): the weekend
schedule alone loses the last sessions of every contract that expires between two Saturdays; with the daily
capture every contract's stored bars reach its last session and equal the simulator's."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.domain.discovery_bounds import DiscoveryBounds
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts
from ghtrader_assets.io.bar_store import bar_path
from ghtrader_assets.io.ib_gateway import GatewaySettings
from ghtrader_assets.io.ibkr_state import read_status
from ghtrader_assets.sim.ib import GatewaySim, OptionSpec, SimClock
from ghtrader_assets.sim.ib import calendar as cal

START = datetime(2026, 10, 31, 6, 0, tzinfo=cal.NY)  # a Saturday, the weekend schedule's time
END = datetime(2026, 11, 28, 6, 0, tzinfo=cal.NY)  # the fifth Saturday: four weeks of expiries in between
SYMBOLS = ("SPY",)  # weekly and monthly expiries, and Monday and Wednesday dailies
SIM = {"symbols": SYMBOLS, "weekly_expiries": 2, "monthly_expiries": 1, "strike_width": 0.02,
       "identical_window_s": 0.0, "illiquid_fraction": 0.1}
BOUNDS = DiscoveryBounds(max_strikes=3)
FAST = {"client_msg_rate": 0, "rate_per_s": 5000.0, "request_timeout_s": 10.0, "max_in_flight": 50}
ENTRIES = [UniverseEntry(s) for s in SYMBOLS]


def simulate(sim: GatewaySim, clock: SimClock, root: Path, capture: bool) -> StoragePaths:
    """Run the month: discovery, hours and minutes each Saturday 06:00; with `capture`, hours and minutes
    with capture on at 16:30 of every NYSE session."""
    paths = StoragePaths(data_root=root / "raw", scope="month", state_dir=root / "state")
    gateway = GatewaySettings(host=sim.host, port=sim.port, client_id=31, **FAST)
    day = START.date()
    while True:
        if day.weekday() == 5:
            clock.set(datetime.combine(day, time(6, 0), cal.NY))
            options = RunOptions(end=clock.now())
            assert not run_contracts(ENTRIES, gateway, paths, options, BOUNDS).failed_symbols
            for stage in ("hours", "minutes"):
                assert not run_bars(stage, ENTRIES, gateway, paths, options).failed_symbols
        if day == END.date():
            return paths
        if capture and cal.is_trading_day(day):
            clock.set(datetime.combine(day, time(16, 30), cal.NY))
            for stage in ("hours", "minutes"):
                report = run_bars(stage, ENTRIES, gateway, paths, RunOptions(end=clock.now(), capture=True))
                assert not report.failed_symbols and report.counts["ERR"] == 0
        day += timedelta(days=1)


def expired_options(sim: GatewaySim, paths: StoragePaths, stage: str) -> list[OptionSpec]:
    """The options the stage requested that had expired by the end of the month (the simulator's terms)."""
    out = []
    for symbol in SYMBOLS:
        for conid in read_status(paths.state_dir, stage, symbol).contracts:
            spec = sim.universe.lookup(conid)
            assert isinstance(spec, OptionSpec)
            if sim.universe.expired(spec):
                out.append(spec)
    return out


def stored(paths: StoragePaths, spec: OptionSpec, bar_size: str) -> pl.DataFrame:
    path = bar_path(paths.data_root, paths.scope, spec.symbol, spec.conid, "TRADES", bar_size)
    return pl.read_parquet(path) if path.exists() else pl.DataFrame({"ts": []}, schema={"ts": pl.Datetime("us", "UTC")})


def truth(sim: GatewaySim, spec: OptionSpec, bar_size: str, duration: str) -> list[datetime]:
    """The simulator's bars of the option up to its expiry close (its whole traded life within `duration`)."""
    close = datetime.combine(datetime.strptime(spec.expiry, "%Y%m%d").date(), time(16, 0), cal.NY)
    return [b.time for b in sim.universe.bars(spec.conid, bar_size, duration, close)]  # type: ignore[misc]


@pytest.fixture
def month(ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path) -> dict[str, tuple[GatewaySim, StoragePaths]]:
    runs = {}
    for name, capture in (("weekend", False), ("capture", True)):
        clock = SimClock(START)
        sim = ib_gateway_factory(clock=clock, **SIM)
        runs[name] = (sim, simulate(sim, clock, tmp_path / name, capture))
    return runs


def test_a_month_weekend_only_loses_the_last_week_the_capture_keeps_every_bar(month, capsys, summary) -> None:
    sim, paths = month["capture"]
    now = END.astimezone(UTC)
    for stage, bar_size, duration in (("hours", "8 hours", "6 M"), ("minutes", "30 mins", "6 M")):
        expired = expired_options(sim, paths, stage)
        assert len({s.expiry for s in expired}) >= 8  # weeklies, the monthly and SPY's Mon/Wed dailies
        cover = [read_status(paths.state_dir, stage, s).coverage(now, _rule()) for s in SYMBOLS]
        assert sum(c.truncated for c in cover) == 0 and sum(c.expired for c in cover) == len(expired)
        last_session_bars = 0
        for spec in expired:
            have = stored(paths, spec, bar_size)["ts"].to_list()
            want = truth(sim, spec, bar_size, duration)
            assert have == [t for t in want if not have or t >= have[0]], (stage, spec)  # nothing lost to expiry
            last_session_bars += bool(have) and have[-1].astimezone(cal.NY).date() == _last_session(spec)
        assert last_session_bars >= 0.8 * len(expired)  # the rest did not trade on their last day

    weekend_sim, weekend = month["weekend"]
    figures = {}
    for stage, bar_size, duration in (("hours", "8 hours", "6 M"), ("minutes", "30 mins", "6 M")):
        cover = [read_status(weekend.state_dir, stage, s).coverage(now, _rule()) for s in SYMBOLS]
        truncated, lost = sum(c.truncated for c in cover), sum(c.lost_sessions for c in cover)
        expired = expired_options(weekend_sim, weekend, stage)
        missing = 0
        for spec in expired:
            have = stored(weekend, spec, bar_size)["ts"].to_list()
            missing += sum(1 for t in truth(weekend_sim, spec, bar_size, duration) if have and t > have[-1])
        assert truncated > 0.8 * len(expired) and lost >= truncated and missing > 0
        figures[stage] = (len(expired), truncated, lost, missing)
        assert cli_main(["ibkr", "coverage", "--stage", stage, "--state-dir", str(weekend.state_dir), "--end",
                         END.replace(tzinfo=None).isoformat(), "--json"]) == 0  # no zone: New York
        shown = json.loads(capsys.readouterr().out)[stage]["SPY"]
        assert (shown["truncated_by_expiry"], shown["lost_sessions"]) == (truncated, lost)
    for stage, (n, truncated, lost, missing) in figures.items():
        summary.append(f"{stage}: weekend only: {truncated} of {n} expired contracts truncated by expiry, {lost} "
                       f"sessions and {missing} bars lost; with the daily capture: 0")


def _rule():
    from ghtrader_assets.domain.expiry import ExpiryRule

    return ExpiryRule()


def _last_session(spec: OptionSpec) -> date:
    day = datetime.strptime(spec.expiry, "%Y%m%d").date()
    while not cal.is_trading_day(day):
        day -= timedelta(days=1)
    return day


def test_capture_schedule_runs_on_nyse_sessions_at_the_configured_time(monkeypatch) -> None:
    import dagster as dg

    from ghtrader_assets.defs.ibkr import build_ibkr_defs
    from ghtrader_assets.defs.ibkr.schedules import capture_requests

    monkeypatch.setenv("GHTRADER_IB_CAPTURE_TIME", "17:05")
    defs = build_ibkr_defs()
    (schedule,) = [s for s in defs.schedules or [] if s.name == "ibkr_daily_capture"]
    assert schedule.cron_schedule == "5 17 * * 1-5" and schedule.execution_timezone == "America/New_York"
    job = defs.resolve_job_def("ibkr_daily_capture")
    assert {k.path[-1] for k in job.asset_layer.selected_asset_keys} == {"ibkr_hours_bars", "ibkr_minutes_bars"}
    thanksgiving = datetime(2026, 11, 26, 17, 5, tzinfo=cal.NY)
    assert isinstance(capture_requests(["SPY"], thanksgiving), dg.SkipReason)
    (request,) = capture_requests(["SPY"], thanksgiving + timedelta(days=1))
    assert request.partition_key == "SPY" and request.run_key == "capture|2026-11-27|SPY"
    assert request.run_config["ops"]["ibkr_minutes_bars"]["config"] == {"capture": True}
    monkeypatch.setenv("GHTRADER_IB_CAPTURE_TIME", "5pm")
    with pytest.raises(ValueError, match="GHTRADER_IB_CAPTURE_TIME"):
        build_ibkr_defs()
