"""Issue 8: real clusters. A Ray head started with `ray start` on 127.0.0.1 and
the quickstart submitted with `ray job submit`; and Ray's own multi-node test
cluster with the training workers on different nodes.

These tests start their own Ray processes, so they live outside tests/ray
(whose session fixture holds a local Ray for the whole session)."""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kgscale.cli import main
from tests.browser import drawn_fraction, render
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _job_state(status_output: str) -> str | None:
    """The terminal state `ray job status` reports, or None while the job runs. The CLI prints
    "Job 'ID' succeeded" / "failed" / "was stopped" (lower case, coloured) for the ends, and
    "Status for job 'ID': RUNNING" otherwise."""
    text = ANSI.sub("", status_output)
    for state, phrase in (("SUCCEEDED", "' succeeded"), ("FAILED", "' failed"), ("STOPPED", "' was stopped")):
        if phrase in text:
            return state
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_head(tmp_path):
    """`ray start --head` on 127.0.0.1 with its own ports and temp dir; stopped afterwards."""
    gcs, dash = _free_port(), _free_port()
    temp = Path("/tmp") / f"kgs-ray-{os.getpid()}-{gcs}"  # short: Ray's socket paths have a length limit
    # Ray's token authentication, as a real head would run it: every CLI call carries the token
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # every port of its own: other Ray instances on this machine (tests, other users) hold the defaults,
    # and a dashboard agent that cannot bind its port leaves the head with no job agent
    agent, agent_grpc, env_agent, metrics, client = (_free_port() for _ in range(5))
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
           f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
           f"--ray-client-server-port={client}",
           "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
    try:
        yield {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dash}", "temp": temp, "env": env}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, env=env, timeout=120)


@pytest.mark.timeout(1800)  # the whole pipeline as a job: minutes on 2 cores, more when the machine is shared
def test_quickstart_submitted_with_ray_job_submit(ray_head, tmp_path, shared_datasets):
    run_dir = tmp_path / "run"
    runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    runtime_env["env_vars"]["KGSCALE_MIRROR"] = str(shared_datasets)
    runtime_env["env_vars"]["KGSCALE_DATA_DIR"] = str(tmp_path / "cache")
    env_file = tmp_path / "runtime_env.yaml"
    env_file.write_text(yaml.safe_dump(runtime_env))
    # the quickstart, scaled down to a few steps and a slice of each evaluation
    # (tiny models in place of MiniLM and SmolLM2: the job, not the model, is under test)
    overrides = [f"run.dir={run_dir}", "train.kalm.model.model=tiny-bert", "train.kalm.model.frozen_modules=[]",
                 "train.kalm.data.max_samples=64", "train.kalm.train.max_steps=2",
                 "train.kalm.train.micro_batch_size=8", "train.kale.model.model=tiny-llama", "train.kale.train.max_steps=2",
                 "train.kale.train.micro_batch_size=4", "rationales.limit=16",
                 "eval.kgc.limit=50", "eval.qa.limit=10", "ray.progress_bars=false", "tracking.enabled=true"]
    submit = [str(BIN / "ray"), "job", "submit", "--address", ray_head["dashboard"], "--working-dir", str(ROOT),
              "--runtime-env", str(env_file), "--no-wait", "--",
              sys.executable, "-m", "kgscale.cli", "run", "jobs/quickstart.yaml", *overrides]
    env = ray_head["env"]
    for _ in range(12):  # the head's job agent needs a little while after `ray start`
        out = subprocess.run(submit, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
        if "No available agent" not in out.stderr:
            break
        time.sleep(5)
    assert out.returncode == 0, out.stderr
    job_id = re.search(r"raysubmit_[A-Za-z0-9]+", out.stdout + out.stderr).group(0)  # the CLI colours its output
    state = None
    deadline = time.time() + 1500
    while time.time() < deadline:
        r = subprocess.run([str(BIN / "ray"), "job", "status", "--address", ray_head["dashboard"], job_id],
                           capture_output=True, text=True, timeout=60, env=env)
        state = _job_state(r.stdout + r.stderr)
        if state:
            break
        time.sleep(5)
    logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", ray_head["dashboard"], job_id],
                          capture_output=True, text=True, timeout=60, env=env)
    logs = logs.stdout + logs.stderr
    assert state == "SUCCEEDED", f"job state {state}:\n{logs[-4000:]}"
    # every stage wrote its directory and manifest
    for stage in ("snapshot", "questions", "paths", "rationales", "train/kalm", "train/kale", "eval/kgc_start",
                  "eval/kgc", "eval/qa_start", "eval/qa"):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest.get("fingerprint"), stage
    assert json.loads((run_dir / "snapshot" / "manifest.json").read_text())["counts"]["triples"]["train"] == 86835
    assert (run_dir / "train" / "kalm" / "config.json").is_file()
    for name in ("kalm", "kale"):  # one figure a training run, its data beside it
        assert (run_dir / "curves" / f"{name}.png").stat().st_size > 1000
        assert (run_dir / "curves" / f"{name}.csv").read_text().startswith("step,")
    assert "kgscale run: 10 stages" in logs
    assert "KG completion, test" in logs and "  start " in logs and "  trained " in logs  # side by side
    assert "commonsenseqa multiple choice" in logs and "trained - start:" in logs
    # a quiet console: Ray Train's polling warnings and report dicts are in the run's logs/, not here
    assert "Failed to query Ray Train Controller" not in logs and "TrainingReport(" not in logs
    assert "Autoscaler status" not in logs and "Loading weights" not in logs
    assert "TrainingReport(" in (run_dir / "logs" / "workers.log").read_text()
    assert "kgscale run: train/kalm done" in logs and "[kgscale train] step" in logs

    # every stage tracked in MLflow (the run directory's own store), read back with the MLflow client
    assert "kgscale run: tracking in MLflow at sqlite:///" in logs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    runs = {r.data.tags.get("kgscale.stage", "parent"): r
            for r in client.search_runs([client.get_experiment_by_name("kgscale").experiment_id])}
    assert set(runs) == {"parent", "ingest", "questions", "paths", "rationales", "train/kalm", "train/kale",
                         "eval/kgc_start", "eval/kgc", "eval/qa_start", "eval/qa"}
    parent = runs.pop("parent")
    assert parent.info.status == "FINISHED" and parent.data.params["train.kalm.train.max_steps"] == "2"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs.values())
    for name in ("kalm", "kale"):  # each training run's loss history, step by step as metrics.jsonl has it
        logged = [json.loads(x) for x in (run_dir / "train" / name / "metrics.jsonl").read_text().splitlines()]
        history = client.get_metric_history(runs[f"train/{name}"].info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == sorted((r["step"], r["loss"]) for r in logged if "loss" in r)
    assert runs["train/kalm"].data.params["objective.name"] == "kalm_contrastive"
    for name in ("eval/kgc_start", "eval/kgc"):  # the MRR of both models, per relation too
        m = json.loads((run_dir / name / "metrics.json").read_text())
        tracked = runs[name].data.metrics
        assert tracked["both.mrr"] == m["both"]["mrr"] and tracked["both.hits_at_10"] == m["both"]["hits@10"]
        assert any(k.startswith("per_relation.") for k in tracked)
    qa = json.loads((run_dir / "eval" / "qa" / "metrics.json").read_text())
    assert runs["eval/qa"].data.metrics["multiple_choice.commonsenseqa.no_rationale.accuracy"] == \
        qa["multiple_choice"]["commonsenseqa"]["no_rationale"]["accuracy"]

    # the run report, opened as a person would: every section rendered, the curves decoded, examples shown
    dom = render(run_dir / "report.html", tmp_path / "report.png")
    for section in ("stages", "kgc", "qa", "rationales", "training", "config"):
        assert f'<section id="{section}">' in dom, section
    assert 'data-images-decoded="2/2"' in dom
    assert dom.count('class="card kgc-example"') == 6 and dom.count('class="card qa-example"') >= 3
    assert dom.count('class="bar trained"') >= 3  # a bar for each relation of the 50 test triples
    assert "tiny-bert" in dom and "MRR per relation" in dom and "max_steps: 2" in dom
    assert drawn_fraction(tmp_path / "report.png") > 0.1
    before = (run_dir / "report.html").read_text()
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0  # rebuilt from the run's files alone
    assert (run_dir / "report.html").read_text() == before


def test_submitting_to_an_address_with_no_cluster_says_so(tmp_path, shared_datasets):
    port = _free_port()
    r = subprocess.run([sys.executable, "-m", "kgscale.cli", "run", str(ROOT / "jobs" / "quickstart.yaml"),
                        f"run.dir={tmp_path}", f"ray.address=127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "KGSCALE_MIRROR": str(shared_datasets)})
    assert r.returncode == 2
    assert f"no Ray cluster at 127.0.0.1:{port}" in r.stderr
