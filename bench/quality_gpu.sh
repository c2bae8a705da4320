#!/usr/bin/env bash
# Quality on one large GPU in about 10 minutes: MiniLM (batch 1024, self-negatives)
# and SmolLM2-135M with KaLM (LoRA), each trained on WN18RR and ranked over all
# 40,943 entities beside its starting model (filtered MRR, Hits@1, Hits@10).
#
#   bash bench/quality_gpu.sh            # on a machine with a CUDA GPU
#   bash bench/quality_gpu.sh --cpu-smoke  # the same recipes, CPU-sized: tiny
#                                          # models, a few steps (tests the script)
#
# Figures land in runs/gpu_*/summary.json; docs/training.md records them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${KGSCALE_VENV:-$root/.venv}/bin"
if [[ -z "${KGSCALE_MIRROR:-}" && -d "$root/../shared/datasets" ]]; then
  export KGSCALE_MIRROR="$(cd "$root/../shared/datasets" && pwd)"
fi
export HF_HUB_OFFLINE=1
extra_minilm=() extra_kalm=()
if [[ "${1:-}" == "--cpu-smoke" ]]; then
  shift
  out="${1:-runs/gpu_smoke}"
  common=(train.NAME.train.use_gpu=false train.NAME.train.max_steps=2 train.NAME.train.micro_batch_size=8
          train.NAME.train.checkpoint_every=2 train.NAME.data.max_samples=64 eval.kgc.limit=20)
  extra_minilm=(run.dir="$out/minilm" train.minilm.model.model=tiny-bert "${common[@]//NAME/minilm}")
  extra_kalm=(run.dir="$out/kalm" train.kalm.model.model=tiny-llama train.kalm.model.lora.target_modules=[gate_proj]
              "${common[@]//NAME/kalm}")
else
  "$py/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here; use --cpu-smoke to test the recipes on CPU')"
fi
for recipe in minilm_wn18rr kalm_smollm2_wn18rr; do
  args=("${extra_minilm[@]}")
  [[ "$recipe" == kalm_smollm2_wn18rr ]] && args=("${extra_kalm[@]}")
  start=$(date +%s)
  "$py/kgscale" run "jobs/gpu/$recipe.yaml" ${args[@]+"${args[@]}"} | tail -n 5
  echo "$recipe: $(( $(date +%s) - start )) s"
done
