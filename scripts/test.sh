#!/usr/bin/env bash
# Set everything up (virtual environment, pinned install, DeepSpeed CPU ops)
# and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
# Debian's chromium, for the test that opens a run report as a person would
# (tests/unit/test_report_html.py); skipped with a reason where none can be installed
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo_=""; [[ "$(id -u)" == 0 ]] || sudo_="sudo -n"
  { $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "scripts/test.sh: could not install chromium; the browser test will be skipped" >&2
fi
cd "$root"
export HF_HUB_OFFLINE=1 RAY_DEDUP_LOGS=0
exec "${KGSCALE_VENV:-$root/.venv}/bin/python" -m pytest --timeout 300 -q -p no:cacheprovider --durations=15 "$@"
