"""The shape of an inference actor pool on whatever cluster Ray runs on."""
from __future__ import annotations

from typing import NamedTuple

import ray

from kgscale.config import StrictModel

# A ceiling at or above this is "no ceiling": the autoscaler's -1 (sys.maxsize)
# or KubeRay's default maxReplicas (2**31 - 1) times the GPUs of a pod.
_UNBOUNDED = 2**31 - 1


class PoolConfig(StrictModel):
    # CPU actors: the pool's size (None: one per node). GPU actors: the
    # ceiling of an autoscaling pool of 1..actors (None: the GPUs the
    # autoscaler may add up to, when Ray reports its configuration, else the
    # GPUs present at start, at least 1)
    actors: int | None = None
    # None: all of a node's CPUs (CPU actors) / 1 CPU (GPU actors)
    cpus_per_actor: float | None = None
    # None: 1 GPU per actor when the cluster has GPUs or its autoscaler may
    # add some, else 0
    gpus_per_actor: float | None = None


class PoolShape(NamedTuple):
    min_actors: int
    max_actors: int
    initial_actors: int
    cpus: float
    gpus: float

    @property
    def fixed(self) -> bool:
        return self.min_actors == self.max_actors


def shape_for(cfg: PoolConfig, *, gpus_now: float, gpus_max: float | None, nodes: int,
              node_cpus: float) -> PoolShape:
    """The pool for a cluster with ``gpus_now`` GPUs at start, ``gpus_max``
    the most its autoscaler may have (None: not known), ``nodes`` alive nodes
    of at least ``node_cpus`` CPUs.

    GPU actors autoscale from 1 to a ceiling: a cluster whose GPU workers
    scale from zero (KubeRay ``minReplicas: 0``) has no GPU when the job
    starts, and a pool sized by the GPUs present would stay at one actor
    while the autoscaler could add more. The pool starts with as many actors
    as there are GPUs present (at least 1), and Ray Data adds actors (the
    autoscaler, nodes for them) while its actors are busy, up to the ceiling.

    CPU actors: a fixed pool, one actor per node with all its cores: torch
    is multi-threaded, so that beats one actor per core, each with its own
    model copy."""
    if gpus_max is not None and gpus_max >= _UNBOUNDED:
        gpus_max = None
    gpus_per_actor = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else (
        1.0 if max(gpus_now, gpus_max or 0) >= 1 else 0.0)
    if gpus_per_actor > 0:
        present = int(gpus_now // gpus_per_actor)
        if cfg.actors:
            ceiling = cfg.actors
        elif gpus_max is not None:
            ceiling = max(1, present, int(gpus_max // gpus_per_actor))
        else:
            ceiling = max(1, present)
        cpus = cfg.cpus_per_actor or 1.0
        return PoolShape(1, ceiling, min(ceiling, max(1, present)), cpus, gpus_per_actor)
    actors = cfg.actors or max(1, nodes)
    per_node = -(-actors // max(1, nodes))
    cpus = cfg.cpus_per_actor or max(1.0, float(node_cpus // per_node))
    return PoolShape(actors, actors, actors, cpus, 0.0)


def _autoscaler_max_gpus() -> float | None:
    """The GPUs the cluster's autoscaler may bring up, from the cluster
    configuration it reports to Ray (autoscaler v2, as Ray Data reads it);
    None where none is reported (autoscaler v1, a fixed or local cluster)."""
    try:
        from ray._private.state import state
        limits = state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: absent or changed in another Ray
        return None
    if not limits:
        return None
    gpus = limits.get("GPU")
    return float(gpus) if gpus else None


def pool_shape(cfg: PoolConfig) -> PoolShape:
    """The pool for the cluster Ray is connected to (:func:`shape_for`)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = min((float(n["Resources"].get("CPU", 1)) for n in nodes), default=1.0)
    return shape_for(cfg, gpus_now=float(ray.cluster_resources().get("GPU", 0)),
                     gpus_max=_autoscaler_max_gpus(), nodes=len(nodes), node_cpus=node_cpus)


def strategy(shape: PoolShape) -> "ray.data.ActorPoolStrategy":
    import ray.data

    if shape.fixed:
        return ray.data.ActorPoolStrategy(size=shape.max_actors)
    return ray.data.ActorPoolStrategy(min_size=shape.min_actors, max_size=shape.max_actors,
                                      initial_size=shape.initial_actors)


def map_batches_args(cfg: PoolConfig) -> dict:
    """Keyword arguments for ``Dataset.map_batches`` with a callable class."""
    shape = pool_shape(cfg)
    return {"compute": strategy(shape), "num_cpus": shape.cpus, "num_gpus": shape.gpus}


def threads(cfg: PoolConfig) -> int:
    return max(1, int(pool_shape(cfg).cpus))
