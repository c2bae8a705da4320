"""One local Ray instance for every test under tests/ray (starting Ray costs ~5 s)."""
from __future__ import annotations

import logging
import threading

import pytest
import ray


def stop_ray(timeout: float = 10.0) -> None:
    """ray.shutdown(), bounded: on a heavily loaded machine the driver's
    shutdown has been seen to wait for minutes on its GCS subscriber; then the
    session's Ray processes are killed, which releases it."""
    node = getattr(ray._private.worker, "_global_node", None)
    t = threading.Thread(target=ray.shutdown, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive() and node is not None:
        node.kill_all_processes(check_alive=False, allow_graceful=False)
        t.join(30)


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"KGSCALE_TEST": "1"}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    yield
    stop_ray()
