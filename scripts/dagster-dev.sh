#!/usr/bin/env bash
# Open the Dagster UI (http://127.0.0.1:3000) on this project, with the persistent local instance.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || bash scripts/setup.sh
export DAGSTER_HOME="$PWD/.dagster_home"
mkdir -p "$DAGSTER_HOME" && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# dagster loads ./.env over the environment; say which exported settings that ignores
.venv/bin/python -m ghtrader_assets.envfile .env
exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}" "$@"
