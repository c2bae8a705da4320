"""bench/quality_gpu.sh, the one-GPU quality recipe, run end to end on CPU at
tiny scale (`--cpu-smoke`: tiny models, two steps): both recipes go through
ingest, training and the side-by-side ranking, and each prints its starting
and trained model. Its own `kgscale run` processes start their own Ray, so
this lives with the tests that own their clusters."""
from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT


def test_quality_gpu_script_runs_both_recipes_at_cpu_smoke_scale(tmp_path, shared_datasets):
    env = {**os.environ, "KGSCALE_MIRROR": str(shared_datasets), "KGSCALE_DATA_DIR": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run(["bash", str(ROOT / "bench" / "quality_gpu.sh"), "--cpu-smoke", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for name in ("minilm", "kalm"):
        summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        assert set(summary["kgc"]) == {"start", "trained"}
        assert summary["kgc"]["start"]["queries"] == 40  # eval.kgc.limit=20 triples, both directions
    assert out.stdout.count("\n  start     MRR") == 2 and out.stdout.count("\n  trained   MRR") == 2
    assert "minilm_wn18rr: " in out.stdout and "kalm_smollm2_wn18rr: " in out.stdout
