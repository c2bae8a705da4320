"""ray.object_store_gb: the object store of a Ray kgscale starts.

Each case runs in a fresh interpreter: ensure_ray starts Ray once per
process, and this test session may have started its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, not this session's
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_local_ray_gets_the_object_store_asked_for():
    out = _run("""
        import json, ray
        from kgscale.ray_session import RayConfig, ensure_ray
        ensure_ray(RayConfig(num_cpus=1, object_store_gb=0.25))
        print(json.dumps(ray.cluster_resources()))
        ray.shutdown()
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    resources = json.loads(out.stdout.strip().splitlines()[-1])
    assert resources["object_store_memory"] == 0.25 * (1 << 30)
    assert resources["CPU"] == 1


def test_object_store_for_a_cluster_is_ignored_and_said():
    # the same config runs under `ray job submit`, where the cluster sizes its store
    out = _run("""
        from kgscale.ray_session import NoClusterError, RayConfig, ensure_ray
        try:
            ensure_ray(RayConfig(address="127.0.0.1:1", object_store_gb=2))
        except NoClusterError as exc:
            print("NoClusterError:", exc)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "NoClusterError: no Ray cluster at 127.0.0.1:1" in out.stdout  # it went on to join the cluster
    assert "ray.object_store_gb is ignored" in out.stderr and "ray start --object-store-memory" in out.stderr


def test_object_store_must_be_positive():
    import pytest
    from pydantic import ValidationError

    from kgscale.ray_session import RayConfig

    with pytest.raises(ValidationError):
        RayConfig(object_store_gb=0)
