"""Start or join Ray once per process, with the settings kgscale runs under."""
from __future__ import annotations

import os

import ray

from kgscale.config import StrictModel


class RayConfig(StrictModel):
    # None: join the cluster named by RAY_ADDRESS (as under `ray job submit`),
    # else start a local Ray.
    address: str | None = None
    num_cpus: int | None = None
    # Ray Data progress bars; None leaves Ray's setting alone
    progress_bars: bool | None = None


def ensure_ray(cfg: RayConfig | None = None) -> None:
    cfg = cfg or RayConfig()
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        kwargs = {"log_to_driver": True, "include_dashboard": False} if not address else {}
        if cfg.num_cpus is not None and not address:
            kwargs["num_cpus"] = cfg.num_cpus
        ray.init(address=address, **kwargs)
    if cfg.progress_bars is not None:
        ray.data.DataContext.get_current().enable_progress_bars = cfg.progress_bars
