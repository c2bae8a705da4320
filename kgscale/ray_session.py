"""Start or join Ray once per process, with the settings kgscale runs under."""
from __future__ import annotations

import logging
import os
import socket

import ray
from pydantic import Field

from kgscale.config import StrictModel
from kgscale.errors import UserError

log = logging.getLogger("kgscale.ray")


class RayConfig(StrictModel):
    # None: join the cluster named by RAY_ADDRESS (as under `ray job submit`),
    # else start a local Ray.
    address: str | None = None
    num_cpus: int | None = None
    # Ray Data progress bars; None leaves Ray's setting alone
    progress_bars: bool | None = None
    # the object store of a Ray kgscale starts, in GiB (None: Ray's 30% of
    # memory). Ingest holds a source's parsed rows there; beyond it they are
    # spilled to disk: at 20M triples on 24 GiB, 2 Ray CPUs, 94.9 s with the
    # default store against 79.9 s with 12 GiB (docs/scale.md). A cluster's
    # is set by `ray start --object-store-memory` on each node.
    object_store_gb: float | None = Field(None, gt=0)


class NoClusterError(UserError, ConnectionError):
    """The configured Ray address has no cluster behind it."""


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with a clear message, when ``host:port`` has nothing
    listening (ray.init would otherwise retry for a minute and then print a
    stack of gRPC errors)."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError):
        raise NoClusterError(f"no Ray cluster at {address} (start one with `ray start --head`, "
                             "or check ray.address / RAY_ADDRESS)") from None


def ensure_ray(cfg: RayConfig | None = None) -> None:
    cfg = cfg or RayConfig()
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"log_to_driver": True, "include_dashboard": False} if not address else {}
        if cfg.num_cpus is not None and not address:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_gb is not None and not address:
            kwargs["object_store_memory"] = int(cfg.object_store_gb * (1 << 30))
        elif cfg.object_store_gb is not None:
            # the same config runs on a laptop and under `ray job submit`:
            # there it is left to the cluster, as num_cpus is, but said
            log.warning("ray.object_store_gb is ignored: it sizes a Ray that kgscale starts, and the cluster at %s "
                        "has its own (`ray start --object-store-memory BYTES` on each node)", address)
        if address:
            probe_address(address)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise NoClusterError(f"no Ray cluster at {address}: {exc}") from None
    if cfg.progress_bars is not None:
        ray.data.DataContext.get_current().enable_progress_bars = cfg.progress_bars
