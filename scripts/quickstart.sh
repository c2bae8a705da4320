#!/usr/bin/env bash
# Set everything up and run the main job on its embedded default
# (jobs/quickstart.yaml): local Ray, WN18RR and CommonsenseQA from the dataset
# registry (read from the local mirror ../shared/datasets when it is there),
# synthesis, KaLM + KALE training, evaluation; results under runs/quickstart/.
# Extra arguments are config overrides (e.g. run.dir=runs/try2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
if [[ -z "${KGSCALE_MIRROR:-}" && -d "$root/../shared/datasets" ]]; then
  export KGSCALE_MIRROR="$(cd "$root/../shared/datasets" && pwd)"
fi
export HF_HUB_OFFLINE=1
kgscale="${KGSCALE_VENV:-$root/.venv}/bin/kgscale"
"$kgscale" run jobs/quickstart.yaml "$@"
