"""The embedding actor pool's shape: GPU actors autoscale up to a ceiling
(a cluster whose GPU workers scale from zero has no GPU at start), CPU
actors stay one fixed pool a node. No GPU and no Ray cluster needed."""
from __future__ import annotations

import sys

import pytest

from kgscale.eval import pool
from kgscale.eval.pool import PoolConfig, PoolShape, shape_for, strategy

ONE_CPU_NODE = {"nodes": 1, "node_cpus": 16.0}


def test_gpu_workers_at_zero_replicas_autoscale_to_the_configured_actors():
    # KubeRay gpu-workers minReplicas 0: no GPU when the job starts; the
    # documented command asks for GPU actors and sets the ceiling
    shape = shape_for(PoolConfig(gpus_per_actor=1, actors=16), gpus_now=0, gpus_max=None, **ONE_CPU_NODE)
    assert shape == PoolShape(1, 16, 1, 1.0, 1.0)
    assert not shape.fixed


def test_gpu_ceiling_from_the_autoscaler_when_known():
    # autoscaler v2 reports its configuration: gpu-workers 0-4 pods of 1 GPU
    shape = shape_for(PoolConfig(), gpus_now=0, gpus_max=4, **ONE_CPU_NODE)
    assert shape == PoolShape(1, 4, 1, 1.0, 1.0)
    # two GPUs up already: start with both
    assert shape_for(PoolConfig(), gpus_now=2, gpus_max=4, **ONE_CPU_NODE) == PoolShape(1, 4, 2, 1.0, 1.0)
    # half a GPU an actor: twice the actors
    assert shape_for(PoolConfig(gpus_per_actor=0.5), gpus_now=1, gpus_max=4, **ONE_CPU_NODE).max_actors == 8
    # actors= wins over the autoscaler's ceiling
    assert shape_for(PoolConfig(actors=2), gpus_now=0, gpus_max=4, **ONE_CPU_NODE).max_actors == 2


@pytest.mark.parametrize("unbounded", [sys.maxsize, 2**31 - 1])
def test_unbounded_autoscaler_falls_back_to_the_gpus_present(unbounded):
    # KubeRay's default maxReplicas: no useful ceiling; the GPUs present, at least 1
    assert shape_for(PoolConfig(gpus_per_actor=1), gpus_now=0, gpus_max=unbounded, **ONE_CPU_NODE).max_actors == 1
    assert shape_for(PoolConfig(), gpus_now=3, gpus_max=unbounded, **ONE_CPU_NODE) == PoolShape(1, 3, 3, 1.0, 1.0)


def test_gpus_at_start_without_a_ceiling():
    assert shape_for(PoolConfig(), gpus_now=8, gpus_max=None, **ONE_CPU_NODE) == PoolShape(1, 8, 8, 1.0, 1.0)
    # more GPUs present than actors asked for: start only the ceiling
    assert shape_for(PoolConfig(actors=2), gpus_now=8, gpus_max=None, **ONE_CPU_NODE).initial_actors == 2
    assert shape_for(PoolConfig(cpus_per_actor=4), gpus_now=1, gpus_max=None, **ONE_CPU_NODE).cpus == 4.0


def test_cpu_actors_stay_a_fixed_pool_a_node():
    shape = shape_for(PoolConfig(), gpus_now=0, gpus_max=None, nodes=3, node_cpus=16)
    assert shape == PoolShape(3, 3, 3, 16.0, 0.0) and shape.fixed
    # 4 actors on 2 nodes of 16 CPUs: 2 a node, 8 CPUs each
    assert shape_for(PoolConfig(actors=4), gpus_now=0, gpus_max=None, nodes=2, node_cpus=16) == PoolShape(4, 4, 4, 8.0, 0.0)
    # gpus_per_actor=0 on a GPU cluster: CPU actors
    assert shape_for(PoolConfig(gpus_per_actor=0), gpus_now=4, gpus_max=None, nodes=1, node_cpus=8).gpus == 0.0


def test_strategy_and_map_batches_args(monkeypatch):
    ray = pytest.importorskip("ray")
    s = strategy(PoolShape(1, 16, 1, 1.0, 1.0))
    assert (s.min_size, s.max_size, s.initial_size) == (1, 16, 1)
    s = strategy(PoolShape(3, 3, 3, 16.0, 0.0))
    assert (s.min_size, s.max_size) == (3, 3)
    # the cluster as Ray reports it: a CPU-only head, GPU workers at zero
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 0.0}}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0})
    monkeypatch.setattr(pool, "_autoscaler_max_gpus", lambda: 4.0)
    args = pool.map_batches_args(PoolConfig(gpus_per_actor=1))
    assert (args["compute"].min_size, args["compute"].max_size, args["num_gpus"]) == (1, 4, 1.0)
