"""The demo's console: one line per variety and asset, one per IBKR stage and symbol, no Dagster DEBUG lines."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ghtrader_assets.sim.demo import TICK_ASSETS, materialize_ticks, run_ibkr_demo
from ghtrader_assets.sim.demo_progress import WATCH_TAG, live_line
from ghtrader_assets.sim.ib import GatewaySim
from ghtrader_assets_tests.fixtures.ib_sim import SIM_AS_OF

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04"]
TRADING_DAY = dg.DynamicPartitionsDefinition(name="trading_day")
PARTS = dg.MultiPartitionsDefinition({"trading_day": TRADING_DAY,
                                      "variety": dg.StaticPartitionsDefinition(["SHFE.cu", "DCE.m"])})


@dg.multi_asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(), can_subset=True,
                specs=[dg.AssetSpec(name, skippable=True) for name in TICK_ASSETS])
def futures_ticks(context):  # type: ignore[no-untyped-def]  # (a string annotation is refused by Dagster)
    """Emits what the real tick multi-asset emits: one materialization per asset and partition with
    `rows`, and an info line per partition."""
    keys = sorted(context.partition_keys)
    for i, key in enumerate(keys, 1):
        for name in TICK_ASSETS:
            yield dg.AssetMaterialization(name, partition=key, metadata={"rows": 100 * i})
        context.log.info("[%d/%d] %s <- fake: %d rows", i, len(keys), key, 100 * i)


def test_tick_run_prints_one_line_per_asset_and_no_debug(capfd: pytest.CaptureFixture[str]) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("trading_day", DAYS)
    result = materialize_ticks(dg.Definitions(assets=[futures_ticks]), instance, "SHFE.cu", DAYS)
    assert result.success
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == len(TICK_ASSETS), out
    for line, name in zip(lines, TICK_ASSETS):
        assert re.fullmatch(rf"  SHFE\.cu\s+{name}\s+3/3 days\s+600 rows\s+\d+\.\ds", line), line
    assert "DEBUG" not in out + err and "STEP_" not in out + err and "[1/3]" not in out + err
    # the full log stays in the instance for the UI
    logs = instance.all_logs(result.run_id)
    assert any("[1/3]" in (entry.user_message or "") for entry in logs)


def test_live_line_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("trading_day", DAYS)
    for out, drawn in ((io.StringIO(), False), (Terminal(), True)):
        token = f"t{drawn}"
        with live_line(instance, token, "SHFE.cu", TICK_ASSETS, 3, out=out):
            dg.materialize([futures_ticks], instance=instance, tags={
                "dagster/asset_partition_range_start": f"{DAYS[0]}|SHFE.cu",
                "dagster/asset_partition_range_end": f"{DAYS[-1]}|SHFE.cu", WATCH_TAG: token},
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            if drawn:
                time.sleep(1.3)  # one poll after the run has finished
        assert ("underlying_ticks 3/3" in out.getvalue()) is drawn, out.getvalue()


def test_ibkr_demo_prints_one_line_per_stage_and_symbol(
    ib_gateway_factory: Callable[..., GatewaySim], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from ghtrader_assets.io.ib_gateway import GatewaySettings

    sim = ib_gateway_factory(symbols=("AAPL", "SPY"), weekly_expiries=1, monthly_expiries=1)
    run_ibkr_demo(sim.host, sim.port, symbols=("AAPL", "SPY"), root=tmp_path / "raw", state=tmp_path / "st",
                  end=SIM_AS_OF, settings=GatewaySettings(client_msg_rate=0, rate_per_s=500))
    out, err = capfd.readouterr()
    for stage in ("contracts", "hours", "minutes"):
        for symbol in ("AAPL", "SPY"):
            pattern = rf"  {stage} {symbol}: (\d+)/\1 OK=\d+ EMPTY=\d+ ERR=0 SKIP=\d+ \(\d+\.\ds\)"
            assert re.search(pattern, out), (stage, symbol, out)
    assert f"Parquet under {tmp_path / 'raw'}/historical_bars_demo/" in out
    assert "DEBUG" not in out + err
