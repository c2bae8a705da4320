#!/usr/bin/env bash
# Set everything up (virtual environment, pinned install, DeepSpeed CPU ops)
# and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
export HF_HUB_OFFLINE=1 RAY_DEDUP_LOGS=0
exec "${KGSCALE_VENV:-$root/.venv}/bin/python" -m pytest --timeout 300 -q -p no:cacheprovider "$@"
