"""``kgscale run CONFIG``: every stage, chained, each written under one run directory.

::

    run:        {dir: runs/quickstart}
    ray:        {num_cpus: null}
    ingest:     {source: dataset:wn18rr}                          -> DIR/snapshot
    questions:  {source: QA.jsonl | kg, link: {...}, kg: {...}}   -> DIR/questions
    paths:      {search: {...}}                                   -> DIR/paths
    rationales: {teacher: {...}, limit: 64}                       -> DIR/rationales
    train:      {NAME: <a `kgscale train` config>, ...}           -> DIR/train/NAME
    eval:       {kgc: {model: "@NAME", ...}, qa: {model: "@NAME", ...}}  -> DIR/eval/kgc, DIR/eval/qa
    serve:      <a `kgscale serve` config>                        (with --serve)

Each section is the config of the stage's own command, less the paths, which
the runner fills in from the run directory. ``"@NAME"`` as a model names the
output of training run NAME. Sections may be left out: a run without
``questions`` has no paths or rationales, and so on, but a stage whose input
stage is missing is an error that says which section to add.

A stage whose output already holds a result with the same fingerprint (its
config and its inputs' fingerprints, see :mod:`kgscale.pipeline.stages`) is
skipped, so a run that was stopped continues where it stopped.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kgscale.config import ConfigError, StrictModel, build, fingerprint_view
from kgscale.kg.registry import resolve_reference
from kgscale.pipeline.report import headline
from kgscale.pipeline.stages import StageResult, fingerprint, run_stage
from kgscale.pipeline.storage import RunStorage
from kgscale.ray_session import RayConfig, ensure_ray
from kgscale.tracking import TrackingConfig

STAGES = ("ingest", "questions", "paths", "rationales", "train", "eval", "serve")
SECTIONS = ("run", "ray", "tracking", *STAGES)


class RunSettings(StrictModel):
    # every stage writes under this directory: a local path, or a URI a
    # pyarrow filesystem opens (s3://bucket/runs/x, gs://..., hdfs://...)
    # that each finished stage is copied to (see kgscale.pipeline.storage)
    dir: str
    # with a URI in `dir`: the local directory the stages work in
    # (default ~/.cache/kgscale/runs/<hash of the URI>)
    local_dir: Path | None = None
    # stages to run again even when their output is current (names from STAGES)
    force: list[str] = []
    # deploy the `serve` section after evaluation and keep serving
    serve: bool = False


class MissingStageError(ConfigError):
    """A stage's input comes from a stage the config does not have."""


@dataclass(frozen=True)
class ChainStage:
    """How `kgscale run` drives one stage of the synthesis chain: the module
    holding its config model and its driver ``run(cfg, ray_cfg) -> manifest``,
    the stage it reads (None: it reads the source named in its section), and
    which of its config's input fields are filled from which earlier stage's
    directory. Its section is validated by the same model as `kgscale NAME
    --config`."""

    name: str
    module: str
    config: str
    run: str
    reads: str | None = None
    inputs: dict = field(default_factory=dict)
    # a `dataset:NAME` source is resolved to the registry's files here (ingest
    # resolves its own and records the name in the snapshot)
    resolve_source: bool = False
    # its directory under the run directory (default: its name)
    dir: str = ""

    @property
    def out(self) -> str:
        return self.dir or self.name


CHAIN = (
    ChainStage("ingest", "kgscale.ingest", "IngestConfig", "run_ingest", dir="snapshot"),
    ChainStage("questions", "kgscale.synth.questions_stage", "QuestionsConfig", "run_questions", reads="ingest",
               inputs={"snapshot": "ingest"}, resolve_source=True),
    ChainStage("paths", "kgscale.synth.mining", "PathsConfig", "run_paths", reads="questions",
               inputs={"questions": "questions", "snapshot": "ingest"}),
    ChainStage("rationales", "kgscale.synth.rationales", "RationalesConfig", "run_rationales", reads="paths",
               inputs={"paths": "paths"}),
)
CHAIN_DIRS = {stage.name: stage.out for stage in CHAIN}  # where each chain stage writes under the run directory

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _section(data: dict, name: str) -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a mapping")
    return copy.deepcopy(value)


def _need(data: dict, stage: str, needs: str) -> None:
    if needs not in data:
        raise MissingStageError(f"{stage}: needs the output of the `{needs}` stage; add a `{needs}:` section "
                                f"(or run `kgscale {needs}` first and point {stage} at its output)")


class Pipeline:
    """Builds each stage's typed config from the run config and runs it."""

    def __init__(self, data: dict[str, Any], source: str = "config") -> None:
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{', '.join(sorted(unknown))}: unknown section(s); sections are {', '.join(SECTIONS)}")
        self.data = data
        self.source = source
        self.run = build(RunSettings, _section(data, "run"), source=source, section="run")
        bad = set(self.run.force) - set(STAGES)
        if bad:
            raise ConfigError(f"run.force: unknown stage(s) {sorted(bad)}; stages are {', '.join(STAGES)}")
        self.ray = build(RayConfig, _section(data, "ray"), source=source, section="ray")
        self.tracking = build(TrackingConfig, _section(data, "tracking"), source=source, section="tracking")
        if self.tracking.active:
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:
                raise ConfigError("tracking: needs MLflow, an optional extra: pip install 'kgscale[tracking]'")
        self.storage = RunStorage(self.run.dir, self.run.local_dir)
        self.dir = self.storage.local
        self.fp: dict[str, str] = {}
        self.refs: dict[str, str] = {}  # a training run's output directory -> "@NAME"
        self.starts: dict[str, tuple[dict, list[str]]] = {}
        self.results: list[StageResult] = []
        self.plan: list[tuple[str, Path, str, Callable[[], Any]]] = []
        self._build()

    # -- paths ------------------------------------------------------------
    def out(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def _model_ref(self, value: Any, where: str) -> tuple[Any, list[str]]:
        """``"@NAME"`` -> the directory of training run NAME (and its fingerprint)."""
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:]
            key = f"train/{name}"
            if key not in self.fp:
                raise MissingStageError(f"{where}: {value} names no training run; runs are "
                                        f"{', '.join(k[6:] for k in self.fp if k.startswith('train/')) or 'none'}")
            path = str(self.out("train", name))
            self.refs[path] = value
            return path, [self.fp[key]]
        return value, []

    def _named(self, model: dict) -> dict:
        """A model's settings for a fingerprint: a trained model by its run's
        name ("@NAME"), not by where this run directory lies (its content is
        in that run's fingerprint)."""
        return {**model, "model": self.refs.get(model.get("model"), model.get("model"))}

    # -- stages -----------------------------------------------------------
    def _build(self) -> None:
        d = self.data
        for stage in CHAIN:
            # a section turns its stage on, an empty one (`paths: {}` or a
            # bare `paths:`) with every setting at its default
            if stage.name in d:
                if stage.reads:
                    _need(d, stage.name, stage.reads)
                self._chain_stage(stage)
        for name in (_section(d, "train") or {}):
            self._train(name)
        ev = _section(d, "eval")
        unknown = set(ev) - {"kgc", "qa"}
        if unknown:
            raise ConfigError(f"eval.{sorted(unknown)[0]}: unknown evaluation; use eval.kgc and/or eval.qa")
        if "kgc" in ev:
            self._eval_kgc(ev["kgc"] or {})
        if "qa" in ev:
            self._eval_qa(ev["qa"] or {})
        if self.run.serve:
            if not d.get("serve"):
                raise ConfigError("run.serve: true needs a `serve:` section")

    def _add(self, name: str, out: Path, fp: str, fn: Callable[[], Any]) -> None:
        self.fp[name] = fp
        self.plan.append((name, out, fp, fn))

    def _chain_stage(self, stage: "ChainStage") -> None:
        """A stage of the chain ingest -> questions -> paths -> rationales: its
        section, with its inputs and output filled in from the run directory."""
        import importlib

        module = importlib.import_module(stage.module)
        config_class, run = getattr(module, stage.config), getattr(module, stage.run)
        sec = _section(self.data, stage.name)
        # a source is stamped by its name and content, not by where this machine keeps it
        source = str(sec.get("source", "")) if "source" in config_class.model_fields else None
        if source is not None and stage.resolve_source and source.startswith("dataset:"):
            sec["source"] = resolve_reference(source)
        inputs = {key: str(self.out(CHAIN_DIRS[of])) for key, of in stage.inputs.items()}
        cfg = build(config_class, {**sec, **inputs, "out": str(self.out(stage.out)), "overwrite": True},
                    source=self.source, section=stage.name)
        view = fingerprint_view(cfg) | ({"source": source} if source is not None else {})
        fp = fingerprint(stage.name, view, [self.fp[stage.reads]] if stage.reads else [],
                         _source_stamp(source) if source is not None else None)
        self._add(stage.name, cfg.out, fp, lambda: run(cfg, self.ray))

    def _train(self, name: str) -> None:
        from kgscale.train.config import TrainConfig

        where = f"train.{name}"
        if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
            # the name becomes run.dir/train/NAME, which is replaced: "../x" or "/x" would replace that
            raise ConfigError(f"train.{name!s:.100}: a training run's name may hold only letters, digits, '.', '_' "
                              f"and '-', and must start with a letter or digit")
        sec = _section(_section(self.data, "train"), name)
        if "ray" in sec:
            raise ConfigError(f"{where}.ray: set Ray options once, in the top-level `ray:` section")
        objective = (sec.get("objective") or {}).get("name")
        data = sec.setdefault("data", {})
        upstream = []
        from kgscale.train.methods import METHODS

        # an unknown name falls to the snapshot here; validating the section names the objectives
        if objective in METHODS and METHODS[objective].input == "rationales":
            if "rationales" not in data:
                _need(self.data, where, "rationales")
                data["rationales"] = str(self.out("rationales"))
                upstream.append(self.fp["rationales"])
        elif "snapshot" not in data:
            _need(self.data, where, "ingest")
            data["snapshot"] = str(self.out("snapshot"))
            upstream.append(self.fp["ingest"])
        model = sec.setdefault("model", {})
        model["model"], refs = self._model_ref(model.get("model"), f"{where}.model.model")
        upstream += refs
        # what this run starts from, for evaluating it beside the trained model
        self.starts[name] = ({k: v for k, v in model.items() if k in ("model", "gguf_file", "kind", "seed")}, refs)
        sec.setdefault("train", {})["out"] = str(self.out("train", name))
        self._model_stage(f"train/{name}", TrainConfig, {**sec, "ray": self.ray.model_dump()}, where, upstream,
                          _train_stage, key=where)

    def _model(self, value: Any, where: str) -> tuple[dict, list[str]]:
        """A section's model (a name or a mapping) with ``"@NAME"`` resolved,
        and the fingerprints it brings."""
        from kgscale.models.backbone import model_section

        model = model_section(value)
        model["model"], refs = self._model_ref(model.get("model"), f"{where}.model")
        return model, refs

    def _eval_kgc(self, sec: dict) -> None:
        sec = copy.deepcopy(sec)
        _need(self.data, "eval.kgc", "ingest")
        # a trained model is evaluated beside the model its run started from,
        # with identical settings, unless `compare_start: false`
        compare = sec.pop("compare_start", True)
        if not isinstance(compare, bool):
            raise ConfigError(f"eval.kgc.compare_start: must be true or false (got {compare!r})")
        model, refs = self._model(sec.pop("model", None), "eval.kgc")
        ref = self.refs.get(model["model"], "")
        if compare and ref.startswith("@"):
            self._kgc_stage("eval/kgc_start", sec, *self.starts[ref[1:]])
        self._kgc_stage("eval/kgc", sec, model, refs)

    def _kgc_stage(self, name: str, sec: dict, model: dict, refs: list[str]) -> None:
        from kgscale.eval.kgc import KGCConfig, run_kgc

        self._model_stage(name, KGCConfig, {**sec, "model": model, "snapshot": str(self.out("snapshot")),
                                            "out": str(self.out(*name.split("/"))), "overwrite": True},
                          "eval.kgc", [self.fp["ingest"], *refs], lambda cfg, fp, name: run_kgc(cfg, self.ray))

    def _eval_qa(self, sec: dict) -> None:
        sec = copy.deepcopy(sec)
        # other models scored with identical settings, each its own stage
        # eval/qa_<name>: "@NAME" (another training run) or "start" (the model
        # the primary run started from)
        compare = sec.pop("compare", []) or []
        if not isinstance(compare, list):
            raise ConfigError("eval.qa.compare: must be a list of models (\"@NAME\" or \"start\")")
        model, refs = self._model(sec.pop("model", None), "eval.qa")
        primary = self.refs.get(model["model"], "")
        for other in compare:
            if other == "start":
                if not primary.startswith("@"):
                    raise ConfigError("eval.qa.compare: \"start\" needs eval.qa.model to name a training run (\"@NAME\")")
                self._qa_stage("eval/qa_start", sec, *self.starts[primary[1:]])
            elif isinstance(other, str) and other.startswith("@"):
                self._qa_stage(f"eval/qa_{other[1:]}", sec, *self._model(other, f"eval.qa_{other[1:]}"))
            else:
                raise ConfigError(f"eval.qa.compare: {other!r} is neither \"@NAME\" nor \"start\"")
        self._qa_stage("eval/qa", sec, model, refs)

    def _qa_stage(self, name: str, sec: dict, model: dict, refs: list[str]) -> None:
        from kgscale.eval.qa import QAConfig, run_qa

        sec = copy.deepcopy(sec)
        upstream = list(refs)
        # with a rationale stage in the run, QA is scored with and without them
        if "rationales" not in sec and "rationales" in self.fp:
            sec["rationales"] = str(self.out("rationales"))
            upstream.append(self.fp["rationales"])
        if sec.get("kgqa_snapshot") == "@snapshot":
            _need(self.data, "eval.qa.kgqa_snapshot", "ingest")
            sec["kgqa_snapshot"] = str(self.out("snapshot"))
            upstream.append(self.fp["ingest"])
        data_refs = [str(p) for p in sec.get("data", []) or []]
        # the data files are stamped by name and content, not by where this machine keeps them
        self._model_stage(name, QAConfig, {**sec, "model": model, "out": str(self.out(*name.split("/"))),
                                           "overwrite": True},
                          "eval.qa", upstream, lambda cfg, fp, name: run_qa(cfg, self.ray),
                          stamps=[_source_stamp(p) for p in data_refs])

    def _model_stage(self, name: str, config: type, values: dict, section: str, upstream: list[str],
                     run: Callable[[Any, str, str], Any], stamps: Any = None, key: str | None = None) -> None:
        """A stage whose config names a model (a training run, an evaluation):
        its section validated by the stage's own config model, its fingerprint
        derived from that model's view with a trained model named by "@NAME"
        (``key``: the name hashed, where it is not the plan's name)."""
        cfg = build(config, values, source=self.source, section=section)
        view = fingerprint_view(cfg)
        fp = fingerprint(key or name, {**view, "model": self._named(view["model"])}, upstream, stamps)
        self._add(name, self.out(*name.split("/")), fp, lambda: run(cfg, fp, name))

    # -- running ----------------------------------------------------------
    def execute(self, progress: Callable[[str], None] = print) -> list[StageResult]:
        ensure_ray(self.ray)
        self.storage.check()
        self.dir.mkdir(parents=True, exist_ok=True)
        tracker = None
        if self.tracking.active:
            from kgscale.tracking import Tracker

            tracker = Tracker(self.tracking, self.dir, self.data)
            progress(f"kgscale run: tracking in MLflow at {tracker.uri} (experiment {self.tracking.experiment})")
        try:
            self._execute(progress, tracker)
        except BaseException:
            if tracker is not None:
                tracker.close(ok=False)
            raise
        if tracker is not None:
            tracker.close()
        return self.results

    def _execute(self, progress: Callable[[str], None], tracker) -> None:
        for name, out, fp, fn in self.plan:
            stage = name.split("/")[0]
            progress(f"kgscale run: {name} ...")
            result = run_stage(name, out, fp, fn, force=stage in self.run.force or name in self.run.force,
                               storage=self.storage)
            self.results.append(result)
            where = self.storage.shown(out)
            status = "is current, skipped" if result.skipped else "done"
            if result.pulled:
                status = f"is current in {self.storage}, copied here"
            progress(f"kgscale run: {name} {status} ({result.seconds:.1f} s): {headline(result)} -> {where}")
            if tracker is not None:
                tracker.log_stage(result)

    def serve(self) -> str:
        from kgscale.serve.config import ServeConfig
        from kgscale.serve.server import start

        sec = _section(self.data, "serve")
        model = sec.get("model")
        if isinstance(model, dict):
            model["model"], _ = self._model_ref(model.get("model"), "serve.model.model")
        else:
            sec["model"], _ = self._model_ref(model, "serve.model")
        if isinstance(sec.get("kg"), dict) and sec["kg"].get("snapshot") in (None, "@snapshot"):
            sec["kg"]["snapshot"] = str(self.out("snapshot"))
        cfg = build(ServeConfig, sec, source=self.source, section="serve")
        return start(cfg)


def _source_stamp(source: str) -> Any:
    """What identifies a source's content cheaply: registry datasets are pinned
    by checksum; local files by size and modification time."""
    if source.startswith("dataset:") or "://" in source or source == "kg":
        return source
    path = Path(source)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files[:1000]]


def _train_stage(cfg, fp: str, name: str) -> dict:
    """A training stage: an interrupted run of the same stage (same config and
    inputs) resumes from its last checkpoint; anything else starts afresh."""
    from kgscale.train.run import resumable, run_train

    if resumable(cfg, fp):
        print(f"kgscale run: {name} resumes its interrupted run from the last checkpoint", flush=True)
        return run_train(cfg, resume=True, fingerprint=fp)
    return run_train(cfg, overwrite=True, fingerprint=fp)


__all__ = ["Pipeline", "RunSettings", "MissingStageError", "STAGES"]
