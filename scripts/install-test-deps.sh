#!/usr/bin/env bash
# Install the system packages the test suite needs beyond the virtual env (Debian/Ubuntu, apt):
#   chromium    - the headless browser the UI tests drive (@pytest.mark.browser), at /usr/bin/chromium
#   postgresql  - the server binaries (initdb, pg_ctl, postgres) the PostgreSQL instance test starts
# Safe to run again: nothing is installed when the binaries are already there. Needs root (or sudo).
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
have_postgres || missing+=(postgresql)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "== test dependencies present (chromium, postgresql)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} by hand" >&2; exit 1; }

echo "== installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || { echo "apt-get update failed" >&2; exit 1; }
# --no-install-recommends keeps chromium's set small; postgresql's recommends are not needed either.
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }

[ -x /usr/bin/chromium ] || { echo "chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
have_postgres || { echo "postgresql installed but no initdb found" >&2; exit 1; }
echo "== test dependencies installed"
