"""bench/scale.py's ingest step: Ray is started before the timed span (its
start does not grow with the graph and is reported apart), and the
manifest's per-phase seconds are columns of the printed table. No Ray is
started: ensure_ray and run_ingest are stand-ins."""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ray_start_is_outside_the_timed_ingest(scale, monkeypatch, tmp_path):
    import kgscale.ingest
    import kgscale.ray_session

    started = []

    def ensure_ray(cfg=None):  # as the real one: a start costs seconds, once
        if not started:
            time.sleep(0.5)
            started.append(cfg)

    def run_ingest(cfg, ray_cfg=None):  # as kgscale.ingest.run_ingest: it calls ensure_ray itself
        kgscale.ray_session.ensure_ray(ray_cfg)
        return {"counts": {"triples_total": 1000, "entities": 10}, "rejected": {"total": 0},
                "timings_s": {"open": 0.01, "plan": 0.0, "read": 0.02, "encode": 0.01, "write": 0.0, "total": 0.05}}

    monkeypatch.setattr(kgscale.ray_session, "ensure_ray", ensure_ray)
    monkeypatch.setattr(kgscale.ingest, "run_ingest", run_ingest)
    args = argparse.Namespace(work=str(tmp_path), triples=1000, seed=0, read_task_mb=8.0, ray_cpus=1, rss_limit_gb=None,
                              object_store_gb=None)
    out = scale.step_ingest(args)
    assert len(started) == 1 and started[0].num_cpus == 1
    assert out["ray_start_s"] >= 0.5
    assert out["seconds"] < 0.5, "Ray's start was timed as ingest"
    assert out["timings_s"]["read"] == 0.0  # rounded to 0.1 s


def test_table_has_the_phases_as_columns(scale):
    ingest = {"seconds": 14.2, "ray_start_s": 4.3, "us_per_triple": 14.2, "driver_peak_rss_bytes": 1 << 30,
              "driver_rss_bytes_per_triple": 1073.7, "tree_peak_rss_bytes": 2 << 30,
              "timings_s": {"open": 0.0, "plan": 0.1, "read_and_encode": 12.5, "write": 0.4, "checksum_inputs": 0.1,
                            "total": 14.2}}
    res = {"triples": 1_000_000, "seed": 0, "synth": {"reused": True, "entities": 222_222, "relations": 300},
           "ingest": ingest}
    lines = scale.table(res).splitlines()
    i = next(k for k, l in enumerate(lines) if l.strip().startswith("ingest"))
    head, row = lines[i + 1].split(), lines[i + 2].split()
    assert head[:2] == ["ray", "start"] and head[-1] == "(s)"
    names = ["ray start", "open", "plan", "read_and_encode", "write", "checksum_inputs", "other", "total"]
    assert dict(zip(names, row)) == {"ray start": "4.3", "open": "0.0", "plan": "0.1", "read_and_encode": "12.5",
                                     "write": "0.4", "checksum_inputs": "0.1", "other": "1.1", "total": "14.2"}
    # a run recorded before the phases were printed (no timings, no ray_start_s) still prints
    old = dict(ingest)
    del old["timings_s"], old["ray_start_s"]
    assert len(scale.table({**res, "ingest": old}).splitlines()) == len(lines) - 2
    assert scale.phase_columns({"timings_s": {"open": 1.0, "total": 1.0}})[1].split()[0] == "-"
