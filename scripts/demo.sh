#!/usr/bin/env bash
# Set up everything, then run the main job on the embedded default: the project's local QuestDB and the
# local TqSdk / IB Gateway simulators. QuestDB is left running (stop it: .venv/bin/ghtrader-assets questdb stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="$PWD/.dagster_home"
exec .venv/bin/python -m ghtrader_assets.sim.demo "$@"
