"""Training across nodes: Ray's own multi-node test cluster (two raylets on this
machine), the training workers placed on different nodes, and the run succeeds."""
from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from kgscale.config import build
from kgscale.ingest import IngestConfig, run_ingest
from kgscale.train.config import TrainConfig
from kgscale.train.run import run_train
from tests.conftest import write_benchmark


@pytest.fixture()
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_training_workers_on_different_nodes(two_nodes, tmp_path):
    ents = "id\tname\tdescription\n" + "".join(f"e{i}\tentity {i}\tthe {i}th thing\n" for i in range(12))
    train = "".join(f"e{i}\tr\te{(i * 5 + 1) % 12}\n" for i in range(12))
    src = write_benchmark(tmp_path / "kg", train=train, test="e0\tr\te3\n", entities=ents, relations="id\ttext\nr\trelated to\n")
    run_ingest(IngestConfig(source=str(src), out=tmp_path / "snap"))
    cfg = build(TrainConfig, {
        "objective": {"name": "kalm"}, "model": {"model": "tiny-llama", "lora": {"enabled": False}},
        "data": {"snapshot": str(tmp_path / "snap"), "max_length": 32},
        "train": {"out": str(tmp_path / "model"), "num_workers": 2, "micro_batch_size": 4, "max_steps": 2,
                  "strategy": "deepspeed", "zero_stage": 2, "placement_strategy": "STRICT_SPREAD",
                  "checkpoint_every": 2},
    })
    manifest = run_train(cfg)
    assert manifest["stage"] == "train"
    assert (tmp_path / "model" / "config.json").is_file()
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
    nodes = {a.node_id for a in workers}
    assert len(workers) >= 2 and len(nodes) == 2, [(a.actor_id, a.node_id, a.state) for a in workers]
