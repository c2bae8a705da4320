"""One local Ray instance for every test under tests/ray (starting Ray costs ~5 s)."""
from __future__ import annotations

import logging

import pytest
import ray


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"KGSCALE_TEST": "1"}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    yield
    ray.shutdown()
