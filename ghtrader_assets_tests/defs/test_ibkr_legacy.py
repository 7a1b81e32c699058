"""Moving from the earlier weekend script: its Parquet files merged (in place and by `ibkr import-legacy`), its
flags accepted with their meaning, and a dry run that prints the plan."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ghtrader_assets.cli import main as cli_main
from ghtrader_assets.domain.run_summary import Status
from ghtrader_assets.domain.universe import UniverseEntry
from ghtrader_assets.ibkr_stages import RunOptions, StoragePaths
from ghtrader_assets_tests.fixtures.ib_stages import run_bars, run_contracts
from ghtrader_assets.io.bar_store import bar_path
from ghtrader_assets.io.ib_gateway import GatewaySettings
from ghtrader_assets.io.ibkr_state import read_latest_cache, read_stage_records, read_status, write_universe
from ghtrader_assets.sim.ib import GatewaySim
from ghtrader_assets.sim.ib import calendar as cal
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

SIM = {"symbols": ("AAPL",), "weekly_expiries": 1, "monthly_expiries": 2, "strike_width": 0.04,
       "identical_window_s": 0.0}
FAST = {"client_msg_rate": 0, "rate_per_s": 5000.0, "request_timeout_s": 5.0, "max_in_flight": 50}


def legacy_frame(sim: GatewaySim, conid: int, end: datetime, with_keys: bool = True) -> pl.DataFrame:
    """A file as the earlier script wrote it: ib_insync's bar fields (`date` in New York, `average`,
    `barCount`, integer volume), `ts` as naive UTC, and its key columns unless `with_keys` is False."""
    bars = sim.universe.bars(conid, "8 hours", "6 M", end)
    frame = pl.DataFrame({
        "date": [b.time.astimezone(cal.NY) for b in bars],  # type: ignore[union-attr]
        "open": [b.open for b in bars], "high": [b.high for b in bars], "low": [b.low for b in bars],
        "close": [b.close for b in bars], "volume": [b.volume for b in bars], "average": [b.wap for b in bars],
        "barCount": [b.count for b in bars],
        "ts": [b.time.astimezone(UTC).replace(tzinfo=None) for b in bars],  # type: ignore[union-attr]
    })
    if with_keys:
        frame = frame.with_columns(pl.lit("AAPL").alias("symbol"), pl.lit(conid).alias("conid"),
                                   pl.lit("8 hours").alias("bar_size"), pl.lit("TRADES").alias("what_to_show"))
    return frame


@pytest.fixture
def setup(ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path) -> tuple[GatewaySim, StoragePaths, Any]:
    sim = ib_gateway_factory(**SIM)
    paths = StoragePaths(data_root=tmp_path / "raw", scope="weekend", state_dir=tmp_path / "state")
    gateway = GatewaySettings(host=sim.host, port=sim.port, client_id=41, **FAST)
    assert not run_contracts([UniverseEntry("AAPL")], gateway, paths, RunOptions(end=SIM_AS_OF)).failed_symbols
    return sim, paths, gateway


def cli(sim: GatewaySim, paths: StoragePaths, *args: str) -> int:
    return cli_main(["ibkr", *args, "--symbols", "AAPL", "--host", sim.host, "--port", str(sim.port),
                     "--client-id", "42", "--rate", "5000", "--msg-rate", "0", "--data-root", str(paths.data_root),
                     "--scope", paths.scope, "--state-dir", str(paths.state_dir)])


def test_an_earlier_file_in_the_live_path_is_merged_not_moved_aside(setup) -> None:
    sim, paths, gateway = setup
    _, cached = read_latest_cache(paths.cache_dir, "AAPL")
    option = next(o for o in cached if o.expiry.isoformat() == "2026-12-18"
                  and len(sim.universe.bars(o.conid, "8 hours", "6 M", SIM_AS_OF - timedelta(days=14))) > 5)
    old_end = SIM_AS_OF - timedelta(days=14)  # the earlier script ran two weeks ago
    old = legacy_frame(sim, option.conid, old_end)
    assert old.height > 5
    target = bar_path(paths.data_root, paths.scope, "AAPL", option.conid, "TRADES", "8 hours")
    target.parent.mkdir(parents=True)
    old.write_parquet(target)
    report = run_bars("hours", [UniverseEntry("AAPL")], gateway, paths, RunOptions(end=SIM_AS_OF))
    assert report.counts["ERR"] == 0
    assert not list(target.parent.glob("*.corrupt-*"))
    (record,) = [r for r in read_stage_records(paths.state_dir, "hours") if r.conid == option.conid]
    assert record.status is Status.OK and "earlier-system file merged" in (record.error_message or "")
    assert record.duration != "6 M"  # incremental from the earlier file's last bar
    merged = pl.read_parquet(target)
    truth = sim.universe.bars(option.conid, "8 hours", "6 M", SIM_AS_OF)
    assert merged["ts"].to_list() == [b.time for b in truth]  # the earlier bars kept, the new ones added
    assert merged["wap"].to_list() == [b.wap for b in truth] and merged["bar_count"].to_list() == [b.count
                                                                                                    for b in truth]


def test_import_legacy_is_a_dry_run_until_applied_and_loses_no_bar(setup, tmp_path: Path, capsys) -> None:
    sim, paths, _ = setup
    options = [o for o in sim.universe.option_chain("AAPL") if not o.illiquid][:3]
    root = tmp_path / "old" / "data_test" / "raw" / "ib" / "historical_bars_weekend"
    written = {}
    for i, option in enumerate(options):
        path = root / "AAPL" / str(option.conid) / "TRADES" / "8_hours.parquet"
        path.parent.mkdir(parents=True)
        legacy_frame(sim, option.conid, SIM_AS_OF, with_keys=i > 0).write_parquet(path)
        written[option.conid] = pl.read_parquet(path)
    broken = root / "AAPL" / "999" / "TRADES" / "8_hours.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"PAR1 truncated")
    args = ["ibkr", "import-legacy", str(tmp_path / "old"), "--data-root", str(paths.data_root), "--scope", "weekend"]
    assert cli_main(args) == 1  # an unreadable file is reported (and left where it is)
    out = capsys.readouterr().out
    assert "would merge" in out and str(broken) in out and not paths.data_root.exists()
    assert cli_main([*args, "--apply"]) == 1
    assert broken.exists()
    for conid, old in written.items():
        ours = pl.read_parquet(bar_path(paths.data_root, "weekend", "AAPL", conid, "TRADES", "8 hours"))
        assert ours["ts"].to_list() == old["ts"].dt.replace_time_zone("UTC").to_list()
        assert ours["close"].to_list() == old["close"].to_list() and set(ours["conid"]) == {conid}
    assert cli_main([*args, "--apply"]) == 1 and "merged 0 new bars" in capsys.readouterr().out  # idempotent


def test_earlier_flags_keep_their_meaning(setup, tmp_path: Path) -> None:
    sim, paths, _ = setup
    end = SIM_AS_OF.astimezone(cal.NY).replace(tzinfo=None).isoformat()  # no zone: New York
    assert cli(sim, paths, "hours", "--end", end) == 0
    first = [r for r in read_stage_records(paths.state_dir, "hours") if r.purpose == "bars"]
    assert first and all(r.window.endswith("2026-11-20") for r in first)  # 16:30 New York, not UTC
    ok = {r.conid for r in first if r.status is Status.OK}
    assert cli(sim, paths, "hours", "--end", end, "--resume") == 0  # the default: OK contracts skipped
    assert cli(sim, paths, "hours", "--end", end, "--no-resume", "--no-incremental") == 0  # as --force
    runs = {}
    for r in read_stage_records(paths.state_dir, "hours"):
        if r.purpose == "bars":
            runs.setdefault(r.run_id, []).append(r)
    resumed, forced = list(runs.values())[1:]
    assert {r.conid for r in resumed if r.status is Status.SKIPPED} == ok
    assert {r.conid for r in forced if r.status is Status.OK} == ok and all(r.duration == "6 M" for r in forced)
    # a universe whose stock conId IB does not know: no underlying close
    universe = write_universe(tmp_path / "u.csv", [UniverseEntry("AAPL", 1)])
    assert cli(sim, paths, "minutes", "--end", end, "--universe", str(universe)) == 0  # median strike fallback
    assert read_status(paths.state_dir, "minutes", "AAPL").symbol_error is None
    assert cli(sim, paths, "minutes", "--end", end, "--universe", str(universe), "--no-skip-underlying-close") == 1
    error = read_status(paths.state_dir, "minutes", "AAPL").symbol_error
    assert error is not None and "no underlying close" in (error.error or "")


def test_dry_run_prints_the_plan_and_writes_nothing(setup, capsys) -> None:
    sim, paths, _ = setup
    assert cli(sim, paths, "minutes", "--end", SIM_AS_OF.isoformat(), "--dry-run", "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary_path"] is None and payload["dry_run"]
    plan = payload["plan"]["AAPL"]
    assert plan["cache"].endswith("AAPL_2026-11-20.json") and plan["cache_date"] == "2026-11-20"
    close = sim.universe.close_on("AAPL", SIM_AS_OF.date())
    assert plan["reference_source"] == "underlying close" and plan["reference_price"] == pytest.approx(close, abs=0.01)
    assert plan["planned"] == len(plan["requests"]) == 2 * 2 * 5 and plan["subset"].count(" C ") == 2
    assert not (paths.state_dir / "run_logs" / "minutes").exists() and not paths.data_root.exists()
    assert cli(sim, paths, "hours", "--end", SIM_AS_OF.isoformat(), "--dry-run") == 0
    text = capsys.readouterr().out
    assert "hours AAPL: cache " in text and "(date 2026-11-20)" in text and "planned" in text


def test_each_stage_lists_only_its_flags(capsys) -> None:
    helps = {}
    for stage in ("contracts", "hours", "minutes"):
        with pytest.raises(SystemExit):
            cli_main(["ibkr", stage, "--help"])
        helps[stage] = capsys.readouterr().out
    assert "--moneyness" in helps["contracts"] and "--moneyness" not in helps["hours"]
    assert "--max-strikes" not in helps["minutes"] and "--capture" in helps["hours"]
    assert "--no-skip-underlying-close" in helps["minutes"] and "--no-skip-underlying-close" not in helps["hours"]
    assert "--no-incremental" in helps["hours"] and "--no-resume" in helps["contracts"]
