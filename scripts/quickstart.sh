#!/usr/bin/env bash
# Set everything up and run the main job on its embedded default: local Ray,
# WN18RR from the dataset registry (read from the local mirror
# ../shared/datasets when it is there), written under runs/quickstart/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
if [[ -z "${KGSCALE_MIRROR:-}" && -d "$root/../shared/datasets" ]]; then
  export KGSCALE_MIRROR="$(cd "$root/../shared/datasets" && pwd)"
fi
export HF_HUB_OFFLINE=1
kgscale="${KGSCALE_VENV:-$root/.venv}/bin/kgscale"
"$kgscale" ingest dataset:wn18rr --out runs/quickstart/snapshot --overwrite ray.progress_bars=false "$@"
"$kgscale" info runs/quickstart/snapshot
