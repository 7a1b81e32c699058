#!/usr/bin/env bash
# Set up everything, then run the whole test suite (extra arguments go to pytest).
# The tests start their own QuestDB server and simulators on free local ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev   # runtime plus the dev group (pytest, pytest-timeout, playwright)
bash scripts/install-test-deps.sh   # chromium (UI check) and postgresql (shared-instance test), from apt
# Tests choose their own servers: never the developer's configured QuestDB.
unset QUESTDB_HOST QUESTDB_HTTP_PORT QUESTDB_PG_PORT
# Two workers (pytest-xdist), a test module per worker at a time: about half the suite's time waits on
# servers and clocks, not on a core. GHTRADER_TEST_WORKERS=0 runs everything in this process.
workers="${GHTRADER_TEST_WORKERS:-2}"
parallel=()
[ "$workers" != "0" ] && parallel=(-n "$workers" --dist loadfile)
set +e
.venv/bin/python -m pytest "${parallel[@]}" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
