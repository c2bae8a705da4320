"""Experiment tracking: a real `kgscale run` (ingest, a short KaLM training
run, KG completion of the starting and the trained model) with `tracking`
enabled, read back with the MLflow client from the run directory's store."""
from __future__ import annotations

import yaml

from kgscale.cli import main
from tests.conftest import write_benchmark


def test_a_run_is_tracked_in_mlflow_with_its_losses_and_mrr(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    ents = "".join(f"e{i}\tthing {i}\tthe {i}th thing\n" for i in range(12))
    train = "".join(f"e{i}\tr\te{(i + 1) % 12}\n" for i in range(12)) + "".join(f"e{i}\ts\te{(i + 5) % 12}\n" for i in range(8))
    src = write_benchmark(tmp_path / "kg", train=train, valid="e0\ts\te7\n", test="e1\tr\te3\ne2\ts\te9\n",
                          entities="id\tname\tdescription\n" + ents, relations="id\ttext\nr\tnext to\ns\tfar from\n")
    stage = {"objective": {"name": "kalm_contrastive"}, "model": {"model": "tiny-llama", "lora": {"enabled": False}},
             "data": {"max_length": 32},
             "train": {"num_workers": 1, "strategy": "ddp", "micro_batch_size": 4, "max_steps": 3, "log_every": 1,
                       "checkpoint_every": 3}}
    run_dir = tmp_path / "try1"
    config = {"run": {"dir": str(run_dir)}, "ray": {"progress_bars": False}, "ingest": {"source": str(src)},
              "train": {"t": stage}, "eval": {"kgc": {"model": "@t"}}, "tracking": {"enabled": True}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    assert "tracking in MLflow at sqlite:///" in capsys.readouterr().out

    client = MlflowClient(f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kgscale")
    runs = {r.data.tags.get("kgscale.stage", "parent"): r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"parent", "ingest", "train/t", "eval/kgc_start", "eval/kgc"}
    parent = runs["parent"]
    assert parent.info.run_name == "try1" and parent.info.status == "FINISHED"
    assert parent.data.params["train.t.train.max_steps"] == "3"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for k, r in runs.items() if k != "parent")
    # the training stage's whole loss history, step by step
    losses = client.get_metric_history(runs["train/t"].info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 3] and all(m.value > 0 for m in losses)
    assert runs["train/t"].data.params["objective.name"] == "kalm_contrastive"
    # the evaluations' MRR, as metrics.json has it, for both models
    import json

    for name in ("eval/kgc_start", "eval/kgc"):
        m = json.loads((run_dir / name / "metrics.json").read_text())
        tracked = runs[name].data.metrics
        assert tracked["both.mrr"] == m["both"]["mrr"] and tracked["both.hits_at_10"] == m["both"]["hits@10"]
        assert "per_relation.r.both.mrr" in tracked
    assert runs["ingest"].data.metrics["counts.triples.train"] == 20
