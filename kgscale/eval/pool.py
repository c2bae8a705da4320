"""The shape of an inference actor pool on whatever cluster Ray runs on."""
from __future__ import annotations

import ray

from kgscale.config import StrictModel


class PoolConfig(StrictModel):
    # None: one actor per GPU if the cluster has GPUs, else one per node
    actors: int | None = None
    # None: all of a node's CPUs (CPU actors) / 1 CPU (GPU actors)
    cpus_per_actor: float | None = None
    # None: 1 GPU per actor when the cluster has GPUs, else 0
    gpus_per_actor: float | None = None


def pool_shape(cfg: PoolConfig) -> tuple[int, float, float]:
    """(actors, cpus per actor, gpus per actor). On CPU one actor per node
    with all its cores: torch is multi-threaded, so that beats one actor per
    core, each with its own model copy."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = min((float(n["Resources"].get("CPU", 1)) for n in nodes), default=1.0)
    gpus_per_actor = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if gpus_per_actor > 0:
        actors = cfg.actors or max(1, int(gpus // gpus_per_actor))
        cpus = cfg.cpus_per_actor or 1.0
    else:
        actors = cfg.actors or max(1, len(nodes))
        per_node = -(-actors // max(1, len(nodes)))
        cpus = cfg.cpus_per_actor or max(1.0, float(node_cpus // per_node))
    return actors, cpus, gpus_per_actor


def map_batches_args(cfg: PoolConfig) -> dict:
    """Keyword arguments for ``Dataset.map_batches`` with a callable class."""
    actors, cpus, gpus = pool_shape(cfg)
    return {"compute": ray.data.ActorPoolStrategy(size=actors), "num_cpus": cpus, "num_gpus": gpus}


def threads(cfg: PoolConfig) -> int:
    return max(1, int(pool_shape(cfg)[1]))
