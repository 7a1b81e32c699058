"""The offline demo: the project's QuestDB plus the local simulators, driving the real assets.

It materializes the futures chain for SHFE.cu and DCE.m over the simulated trading days (and, when the
IBKR stages are installed, discovery and both stages for three symbols) into the persistent Dagster
instance under DAGSTER_HOME, so every run shows up in the UI afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time as dtime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from ghtrader_assets.envfile import load_env_file
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, healthy, ports_from_env
from ghtrader_assets.sim.demo_progress import QUIET_RUN_CONFIG, WATCH_TAG, live_line, result_lines

if TYPE_CHECKING:
    from ghtrader_assets.io.ib_gateway import GatewaySettings

DEMO_START, DEMO_END = date(2024, 1, 2), date(2024, 2, 29)
TICK_ASSETS = ("underlying_ticks", "main_l5", "day_index")  # one multi-asset run per variety


def ensure_questdb() -> QuestDBSettings:
    """Use the configured server; start the project's own one unless GHTRADER_QUESTDB_EXTERNAL=1."""
    settings = QuestDBSettings.from_env()
    if os.environ.get("GHTRADER_QUESTDB_EXTERNAL", "0") == "1":
        print(f"QuestDB: using the existing server at {settings.host}:{settings.http_port}")
        return settings
    home = Path(os.environ.get("GHTRADER_QUESTDB_HOME", ".qdb"))
    ports = ports_from_env()
    if healthy(settings.host, ports.health):
        print(f"QuestDB: already running on {settings.host} (http {ports.http}, pg {ports.pg})")
    else:
        server = QuestDBServer(home=home, ports=ports).start()
        print(f"QuestDB: started pid {server.pid} (http {ports.http}, pg {ports.pg}, data {home}/root)")
    return settings


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, selection: Sequence[str],
         **kwargs: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(defs.assets or []), selection=list(selection), resources=defs.resources,
                          instance=instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG, **kwargs)


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, selection: list[str],
                 partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    started = time.monotonic()
    result = _run(defs, instance, selection, partition_key=partition_key)
    print(f"  {'ok  ' if result.success else 'FAIL'} {','.join(selection)} {partition_key or ''} "
          f"({time.monotonic() - started:.1f}s, run {result.run_id[:8]})")
    return result


def materialize_ticks(defs: dg.Definitions, instance: dg.DagsterInstance, variety: str,
                      days: Sequence[str]) -> dg.ExecuteInProcessResult:
    """The tick assets of `variety` over `days` in one run, printed as one line per asset (days done,
    rows, elapsed), live on a terminal."""
    token = uuid.uuid4().hex
    tags = {"dagster/asset_partition_range_start": f"{days[0]}|{variety}",
            "dagster/asset_partition_range_end": f"{days[-1]}|{variety}", WATCH_TAG: token}
    started = time.monotonic()
    with live_line(instance, token, variety, TICK_ASSETS, len(days)):
        result = _run(defs, instance, TICK_ASSETS, tags=tags)
    for line in result_lines(result, variety, TICK_ASSETS, len(days), time.monotonic() - started):
        print(line)
    if not result.success:
        print(f"  FAIL {variety}: run {result.run_id[:8]} (the UI shows its logs)")
    return result


def run_futures_demo(instance: dg.DagsterInstance) -> bool:
    """The chain for every variety of GHTRADER_VARIETIES (./.env) over the simulated window, so the UI's
    partition grid afterwards shows exactly what the demo built; then the coverage of it."""
    from ghtrader_assets.definitions import configured_varieties, defs as load_defs
    from ghtrader_assets.io import ledger_store as ledger
    from ghtrader_assets.sim.tq import MarketConfig, TqSimServer
    from ghtrader_assets.sim.tq.specs import SPECS

    varieties = configured_varieties()
    unknown = [v for v in varieties if v not in SPECS]
    if unknown:
        print(f"GHTRADER_VARIETIES lists {unknown}, which the simulator does not have (it has {', '.join(SPECS)}); "
              "remove them from .env for the demo")
        return False
    cfg = MarketConfig(seed=1, start=DEMO_START, end=DEMO_END, varieties=varieties)
    with TqSimServer(cfg) as srv:
        os.environ.update(srv.env())
        os.environ.update(
            TQSDK_USER=cfg.username, TQSDK_PASSWORD=cfg.password, GHTRADER_START_DATE=str(DEMO_START),
            GHTRADER_NOW=datetime.combine(DEMO_END, dtime(17, 0)).isoformat() + "+08:00",
            GHTRADER_SCHEDULE_SOURCE=os.environ.get("GHTRADER_SCHEDULE_SOURCE") or "backtest",
        )
        print(f"TqSdk simulator: {srv.md_url} ({cfg.start}..{cfg.end}, seed {cfg.seed}, {', '.join(varieties)})")
        defs = load_defs()
        ok = _materialize(defs, instance, ["trading_days"]).success
        days = instance.get_dynamic_partitions("trading_day")
        for variety in varieties:
            ok &= _materialize(defs, instance, ["main_schedule"], partition_key=variety).success
            ok &= materialize_ticks(defs, instance, variety, days).success
        ok &= _materialize(defs, instance, ["futures_coverage"]).success
    with QuestDBClient(QuestDBSettings.from_env()) as qdb:
        print("\nFutures chain summary")
        print(f"  {'variety':9} {'days':>5} {'main_l5 rows':>13} {'segments':>9} {'no-data days':>13}  rolls")
        for variety in varieties:
            rows = [r for r in ledger.read_schedule(qdb, variety) if DEMO_START <= r.trading_day <= DEMO_END]
            index = ledger.read_index(qdb, f"KQ.m@{variety}", DEMO_START, DEMO_END, "main_l5")
            no_data = int((index["rows_total"] == 0).sum()) if index.height else 0
            rolls = [(r.trading_day, r.main_contract) for i, r in enumerate(rows) if i == 0 or rows[i - 1].main_contract != r.main_contract]
            print(f"  {variety:9} {index.height:>5} {int(index['rows_total'].sum() or 0):>13,} {len(rolls):>9} {no_data:>13}  "
                  + ", ".join(f"{d:%m-%d} {c.split('.')[1]}" for d, c in rolls))
    return ok


def run_ibkr_demo(
    host: str,
    port: int,
    symbols: Sequence[str] = ("AAPL", "MSFT", "SPY"),
    root: Path | None = None,
    state: Path | None = None,
    client_id: int | None = None,
    scope: str = "demo",
    end: datetime | None = None,
    settings: GatewaySettings | None = None,
) -> dict[str, int]:
    """Every stage of the stage table for `symbols` against the gateway at host:port, printed as one
    line per stage and symbol (done/total, counts by status, elapsed); returns the summary counts by
    status (OK, EMPTY, ERR, SKIPPED) over the stages. `end` stands for "now"
    (e.g. a simulator's as_of); `settings` overrides the gateway settings (host/port kept); root,
    state and client_id left None, and the rest, come from ibkr_settings (environment, then defaults)."""
    from ghtrader_assets.domain.run_summary import count_by_status
    from ghtrader_assets.domain.stage_table import STAGE_TABLE
    from ghtrader_assets.domain.universe import UniverseEntry
    from ghtrader_assets.ibkr_progress import StageProgress
    from ghtrader_assets.ibkr_settings import resolve
    from ghtrader_assets.ibkr_stages import RunOptions, StageRun, new_run_id

    base = resolve({"data_root": root, "state_dir": state, "scope": scope, "client_id": client_id})
    # Defaults stay within a real gateway's limits (45 messages/s, 40 open requests); against the
    # simulator pass settings=GatewaySettings(client_msg_rate=0, rate_per_s=200) to run in seconds.
    gateway = replace(settings or replace(base.gateway, request_timeout_s=30.0, rate_per_s=40.0), host=host,
                      port=port, client_id=base.gateway.client_id)
    entries = tuple(UniverseEntry(s.upper()) for s in symbols)
    run_id = new_run_id()
    totals = count_by_status(())
    for stage in STAGE_TABLE:
        progress = StageProgress(stage.name)
        report = StageRun(stage, gateway, base.paths, RunOptions(run_id=run_id, end=end), discovery=base.discovery,
                          thresholds=base.thresholds, listener=progress).run(entries)
        for symbol in progress.symbols():
            print(f"  {progress.symbol_line(symbol)}")
        for status, n in report.counts.items():
            totals[status] += n
    paths = base.paths
    print(f"  Parquet under {paths.data_root}/historical_bars_{paths.scope}/, summaries under "
          f"{paths.state_dir}/run_logs/")
    return totals


def run_ibkr_demo_if_present() -> bool:
    try:
        from ghtrader_assets.io.ib_gateway import GatewaySettings as Settings
        from ghtrader_assets.sim.ib import GatewayConfig, GatewaySim
    except ImportError:
        return True

    config = GatewayConfig(seed=7, as_of=datetime(2026, 11, 20, 21, 30, tzinfo=timezone.utc))  # a Friday, after the close
    with GatewaySim(config) as sim:
        print(f"\nIB Gateway simulator: {sim.host}:{sim.port} (as of {config.as_of:%Y-%m-%d %H:%M} UTC)")
        started = time.monotonic()
        # The simulator has no message throttle of its own: lift the client's real-gateway pacing.
        counts = run_ibkr_demo(sim.host, sim.port, symbols=("AAPL", "MSFT", "SPY"), end=config.as_of,
                               settings=Settings(client_msg_rate=0, rate_per_s=200))
        print(f"  discovery + hours + minutes for AAPL, MSFT, SPY in {time.monotonic() - started:.1f}s")
    print("IBKR stages summary (requests by status): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return not counts.get("ERR")


def run_demo(args: argparse.Namespace) -> int:
    load_env_file(Path(".env"))
    settings = ensure_questdb()
    with QuestDBClient(settings) as client:
        tables = client.bootstrap()
        client.ping()
    print(f"QuestDB: schema ready ({len(tables)} tables)")
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(Path(".dagster_home").resolve())
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    print(f"Dagster instance: {os.environ['DAGSTER_HOME']}\n")
    ok = run_futures_demo(instance)
    ok &= run_ibkr_demo_if_present()
    print("\nLook at it in the UI: bash scripts/dagster-dev.sh, then open http://127.0.0.1:3000 "
          "(Assets -> main_l5 -> Partitions). QuestDB console: http://127.0.0.1:"
          f"{settings.http_port}  (stop QuestDB: .venv/bin/ghtrader-assets questdb stop)")
    return 0 if ok else 1


def main() -> int:
    """`python -m ghtrader_assets.sim.demo` (what scripts/demo.sh runs): the demo is the simulators' tool, not
    a command of the product, which never imports them."""
    parser = argparse.ArgumentParser(prog="python -m ghtrader_assets.sim.demo",
                                     description="run the main job on the embedded default (local QuestDB + simulators)")
    return run_demo(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
