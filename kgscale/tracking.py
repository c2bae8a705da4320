"""Experiment tracking: every stage of a `kgscale run` as an MLflow run.

With ``tracking.enabled: true`` (a SQLite store in the run directory,
``RUN_DIR/mlflow.db``) or ``tracking.mlflow_uri`` (any tracking server or
store URI), each pipeline run becomes a parent MLflow run named after the run
directory, and each stage a child run when it finishes: its configuration as
parameters, and its metrics (a training stage's whole history from
``metrics.jsonl``, step by step with the time each window ended; an
evaluation's ``metrics.json``, per relation included; other stages' counts).

Logged from the driver when a stage ends, not from inside the Ray Train
workers (Ray Train's ``setup_mlflow`` route): on a cluster the workers may
not reach the store (a SQLite file on the head node, a server only the
submitting machine can see), while the driver always can, and the history
arrives complete either way. MLflow is an optional extra
(``pip install kgscale[tracking]``); a config that asks for tracking
without it installed fails before any stage runs.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from pydantic import model_validator

from kgscale.config import ConfigError, StrictModel

# metrics of a training row that are bookkeeping, not measurements
NOT_TRACKED = {"step", "epoch", "time"}
BATCH = 900  # MLflow takes at most 1,000 metrics a call
_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


class TrackingConfig(StrictModel):
    # log to MLflow: the run directory's own SQLite store unless mlflow_uri says where
    enabled: bool = False
    # a tracking server (http://host:5000) or store URI (sqlite:///path.db); setting it enables tracking
    mlflow_uri: str | None = None
    experiment: str = "kgscale"

    @model_validator(mode="after")
    def _named(self):
        if not self.experiment.strip():
            raise ValueError("experiment: must not be empty")
        return self

    @property
    def active(self) -> bool:
        return self.enabled or self.mlflow_uri is not None

    def uri(self, run_dir: Path) -> str:
        return self.mlflow_uri or f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def metric_name(path: str) -> str:
    """An MLflow-legal metric or parameter name (``hits@10`` -> ``hits_at_10``)."""
    return _BAD.sub("_", path.replace("@", "_at_"))[:250]


def flatten(data, prefix: str = "") -> dict:
    """Leaves of nested dicts as ``a.b.c`` -> value."""
    out = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = data
    return out


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def stage_metrics(name: str, out: Path, manifest: dict) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) of one finished stage."""
    now = int(time.time() * 1000)
    metrics_jsonl, metrics_json = Path(out) / "metrics.jsonl", Path(out) / "metrics.json"
    rows: list[tuple[str, float, int, int]] = []
    if name.startswith("train/") and metrics_jsonl.is_file():
        for line in metrics_jsonl.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            ts = int(r.get("time", now / 1000) * 1000)
            rows += [(metric_name(k), float(v), ts, int(r["step"])) for k, v in r.items()
                     if k not in NOT_TRACKED and _numeric(v)]
    elif metrics_json.is_file():
        m = json.loads(metrics_json.read_text(encoding="utf-8"))
        m.pop("timings_s", None)
        rows += [(metric_name(k), float(v), now, 0) for k, v in flatten(m).items() if _numeric(v)]
    else:
        rows += [(metric_name(f"counts.{k}"), float(v), now, 0) for k, v in flatten(manifest.get("counts", {})).items()
                 if _numeric(v)]
    return rows


class Tracker:
    """One parent MLflow run for a pipeline run; one child run a stage."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path, config: dict) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("tracking: needs MLflow, an optional extra: pip install 'kgscale[tracking]'") from None
        self.uri = cfg.uri(run_dir)
        self.client = MlflowClient(self.uri)
        exp = self.client.get_experiment_by_name(cfg.experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(cfg.experiment)
        run = self.client.create_run(self.experiment_id, run_name=Path(run_dir).name,
                                     tags={"kgscale.run_dir": str(Path(run_dir).resolve())})
        self.parent = run.info.run_id
        self._params(self.parent, config)

    def _params(self, run_id: str, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(metric_name(k), str(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(run_id, params=params[i:i + 100])

    def log_stage(self, result) -> str:
        """Log a finished stage (a :class:`kgscale.pipeline.stages.StageResult`); the child run's id."""
        from mlflow.entities import Metric

        run = self.client.create_run(self.experiment_id, run_name=result.name, tags={
            "mlflow.parentRunId": self.parent, "kgscale.stage": result.name, "kgscale.out": str(result.out),
            "kgscale.skipped": str(result.skipped).lower(), "kgscale.fingerprint": result.fingerprint})
        rid = run.info.run_id
        config = result.manifest.get("config")
        if isinstance(config, dict):
            self._params(rid, config)
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in stage_metrics(result.name, result.out, result.manifest)]
        metrics.append(Metric("seconds", float(result.seconds), int(time.time() * 1000), 0))
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(rid, metrics=metrics[i:i + BATCH])
        self.client.set_terminated(rid)
        return rid

    def close(self, ok: bool = True) -> None:
        self.client.set_terminated(self.parent, status="FINISHED" if ok else "FAILED")
