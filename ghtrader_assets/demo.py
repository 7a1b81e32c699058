"""The demo run: start (or reuse) QuestDB, bootstrap the schema, load the definitions and report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ghtrader_assets.envfile import load_env_file
from ghtrader_assets.io.questdb import QuestDBClient, QuestDBSettings
from ghtrader_assets.io.questdb_server import QuestDBServer, healthy, ports_from_env


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


def run_demo(args: argparse.Namespace) -> int:
    load_env_file(Path(".env"))
    settings = ensure_questdb()
    with QuestDBClient(settings) as client:
        tables = client.bootstrap()
        client.ping()
        print(f"QuestDB: schema ready ({len(tables)} tables: {', '.join(tables)})")
    from ghtrader_assets.definitions import defs

    repo = defs().get_repository_def()
    assets = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())
    print(f"Definitions: {len(assets)} assets, {len(repo.schedule_defs)} schedules, {len(repo.sensor_defs)} sensors")
    for key in assets:
        print(f"  - {key}")
    print("Open the UI: bash scripts/dagster-dev.sh  ->  http://127.0.0.1:3000")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the main job on the embedded default (local QuestDB + simulators)")
    parser.set_defaults(func=run_demo)
