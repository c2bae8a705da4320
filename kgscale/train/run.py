"""``kgscale train``: check the config, build the samples, start a Ray Train
TorchTrainer, and write the trained model.

Everything that can be wrong with the input is checked on the driver before
a worker starts: the objective and the model kind, the snapshot or the
rationales, the model and its tokenizer, the LoRA targets, the sequence
length, the cluster's CPUs and GPUs, and whether one global batch fits in the
data. Then::

    OUT.ray/           Ray Train's run directory (storage_path/name)
      checkpoint_*/    DeepSpeed shards (or DDP state), trainer_state.json,
                       metrics.jsonl; the last one also hf/
      metrics.jsonl    live, appended by rank 0
      workers/rankN.pid
    OUT/               the model in Hugging Face format (see kgscale.train.export),
                       train_config.yaml, metrics.jsonl, rejects.jsonl, manifest.json

``--resume`` reuses OUT.ray: Ray Train finds its latest checkpoint and every
worker continues from it. Within a run, ``train.max_failures`` lets Ray Train
replace dead workers, which resume from the same latest checkpoint.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kgscale.config import ConfigError
from kgscale.models.backbone import ModelLoadError, with_absolute_path
from kgscale.models.training import resolve_precision
from kgscale.objectives import objective_class
from kgscale.output import OutputExistsError, StageOutput, place_tree
from kgscale.samples.rejects import SampleRejects
from kgscale.train import TrainError
from kgscale.train.config import TrainConfig
from kgscale.train.methods import method

RUN_SUFFIX = ".ray"
KIND_EXAMPLES = {"causal": "smollm2-135m-instruct or tiny-llama (causal)", "encoder": "all-minilm-l6-v2 or tiny-bert (encoder)",
                 "seq2seq": "tiny-bart or a BART/T5 directory (encoder-decoder)"}


def run_dir_for(out: Path) -> Path:
    return out.parent / (out.name + RUN_SUFFIX)


@dataclass
class Preflight:
    """What the checks found, handed to the data stage and the workers."""

    kind: str
    tokenizer: object
    snapshot: object = None
    decoder_start_token_id: int | None = None


def preflight(cfg: TrainConfig) -> Preflight:
    """Every check that does not need data or workers. Raises ConfigError
    (naming the key) or ModelLoadError."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.backbone import resolve_backbone
    from kgscale.models.training import check_lora_targets, prepare_tokenizer
    from kgscale.samples.kale import rationales_file

    name = cfg.objective.name
    obj, how = objective_class(name), method(name)
    snapshot = None
    if how.input == "rationales":
        if cfg.data.rationales is None:
            raise ConfigError(f"data.rationales: required for objective {name} (the output directory of `kgscale rationales`)")
        rationales_file(cfg.data.rationales)
    else:
        if cfg.data.snapshot is None:
            raise ConfigError(f"data.snapshot: required for objective {name} (a directory written by `kgscale ingest`)")
        snapshot = Snapshot(cfg.data.snapshot)
    try:
        backbone = resolve_backbone(cfg.model)  # once: every check below reads this record
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model.model: cannot load {cfg.model.model!r}: {exc}") from exc
    kind = backbone.kind
    if kind not in obj.model_kinds:
        raise ConfigError(f"model.model: objective {name} trains {' or '.join(obj.model_kinds)} models but "
                          f"{cfg.model.model!r} is {'an' if kind == 'encoder' else 'a'} {kind} model; use e.g. "
                          f"{', '.join(KIND_EXAMPLES[k] for k in obj.model_kinds)}")
    tokenizer = prepare_tokenizer(cfg.model, obj.special_tokens, resolved=backbone)
    if how.check_tokenizer is not None:
        how.check_tokenizer(cfg, tokenizer)
    check_lora_targets(cfg.model, obj.default_lora_targets, resolved=backbone)
    mcfg = backbone.config
    max_pos = getattr(mcfg, "max_position_embeddings", None)
    if max_pos and cfg.data.max_length > max_pos:
        raise ConfigError(f"data.max_length: {cfg.data.max_length} is more than the model's {max_pos} positions")
    if cfg.train.strategy == "ddp" and "zero_stage" in cfg.train.model_fields_set:
        raise ConfigError("train.zero_stage: only applies to strategy deepspeed (strategy is ddp)")
    return Preflight(kind=kind, tokenizer=tokenizer, snapshot=snapshot,
                     decoder_start_token_id=getattr(mcfg, "decoder_start_token_id", None))


def check_resources(cfg: TrainConfig) -> None:
    """Refuse a worker group the cluster cannot place (it would wait forever)."""
    import ray

    t = cfg.train
    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0), res.get("GPU", 0)
    if t.num_workers * t.cpus_per_worker > cpus:
        raise ConfigError(f"train.num_workers: {t.num_workers} workers x {t.cpus_per_worker} CPUs "
                          f"(train.cpus_per_worker) need more than the cluster's {cpus:g} CPUs")
    if t.use_gpu and t.num_workers > gpus:
        raise ConfigError(f"train.use_gpu: {t.num_workers} workers need {t.num_workers} GPUs; the cluster has {gpus:g}")


def check_batch_fits(cfg: TrainConfig, samples: int) -> None:
    t = cfg.train
    if samples < t.global_batch():
        raise ConfigError(
            f"train.micro_batch_size: one optimiser step takes {t.global_batch()} samples "
            f"({t.num_workers} workers x micro_batch_size {t.micro_batch_size} x grad_accum_steps {t.grad_accum_steps}) "
            f"but the data has {samples}; lower train.micro_batch_size or train.grad_accum_steps, "
            f"or raise data.max_samples")


def prepare_run_dir(cfg: TrainConfig, resume: bool, overwrite: bool) -> Path:
    out = cfg.train.out
    run_dir = run_dir_for(out)
    has_run = (run_dir / "checkpoint_manager_snapshot.json").is_file()
    if resume:
        if not has_run:
            raise ConfigError(f"--resume: {run_dir} holds no checkpoint to resume from")
        return run_dir
    if overwrite:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        if has_run:
            raise OutputExistsError(f"{run_dir} holds checkpoints of an earlier run; pass --resume to continue it "
                                    "or --overwrite to start over")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


FINGERPRINT = "pipeline_fingerprint"


def resumable(cfg: TrainConfig, fingerprint: str) -> bool:
    """Does ``cfg``'s run directory hold checkpoints of an interrupted run of
    the same pipeline stage (the same config and inputs: the stage's
    fingerprint, written by :func:`run_train`)? ``kgscale run`` then resumes
    it instead of starting again from step 0."""
    run_dir = run_dir_for(cfg.train.out)
    marker = run_dir / FINGERPRINT
    return ((run_dir / "checkpoint_manager_snapshot.json").is_file() and marker.is_file()
            and marker.read_text().strip() == fingerprint)


def run_train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, fingerprint: str | None = None) -> dict:
    """Train as configured; returns the manifest of the output directory.
    ``fingerprint``: the pipeline stage's, kept in the run directory for
    :func:`resumable`."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from kgscale.ray_session import ensure_ray
    from kgscale.samples.pipeline import sample_table, tokenized_dataset, tokenizer_stage
    from kgscale.train.loop import HF_DIR, train_loop_per_worker
    from kgscale.train.metrics import METRICS

    if cfg.train.out is None:
        raise ConfigError("train.out: required (the output model directory); set it or pass --out DIR")
    output = StageOutput("train", cfg.train.out, overwrite or resume,
                        "pass --overwrite to replace it or --resume to continue its run")
    timer = output.timer
    started = time.time()
    cfg = cfg.model_copy(update={"model": with_absolute_path(cfg.model)})
    with timer("preflight"):
        pre = preflight(cfg)
        ensure_ray(cfg.ray)
        check_resources(cfg)
        run_dir = prepare_run_dir(cfg, resume, overwrite)
        if fingerprint is not None:
            (run_dir / FINGERPRINT).write_text(fingerprint + "\n")
    obj = objective_class(cfg.objective.name)
    rejects = SampleRejects(strict=cfg.data.strict)
    with timer("samples"):
        table = sample_table(cfg, pre.snapshot, rejects)
        check_batch_fits(cfg, table.num_rows)
    with timer("tokenize"):
        stage, kwargs = tokenizer_stage(cfg, obj.special_tokens, pre.decoder_start_token_id, pre.kind)
        ds, truncated = tokenized_dataset(table, stage, kwargs, cfg.data.map_tasks)
    info = {"run_dir": str(run_dir.resolve()), "kind": pre.kind, "pad_id": pre.tokenizer.pad_token_id,
            "epoch_noise": stage.epoch_noise(kwargs) if hasattr(stage, "epoch_noise") else None,
            "samples": table.num_rows, "precision": resolve_precision(cfg.model.precision, cfg.train.use_gpu)}
    worker_info = method(cfg.objective.name).worker_info
    if worker_info is not None:
        info.update(worker_info(cfg, pre, timer))
    (run_dir / "train_config.yaml").write_text(yaml.safe_dump(cfg.record(), sort_keys=False))

    t = cfg.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "info": info},
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                                     resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})},
                                     placement_strategy=t.placement_strategy),
        run_config=RunConfig(name=run_dir.name, storage_path=str(run_dir.parent.resolve()),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=t.max_failures)),
        datasets={"train": ds},
        # every worker reads the whole (small, tokenised) dataset and keeps its
        # fixed share of rows: the order is then a function of (seed, epoch,
        # rank) alone, the same after a resume (kgscale.train.order)
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
    )
    with timer("train"):
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            raise TrainError(f"training failed (checkpoints, if any, are in {run_dir}; fix the cause and "
                             f"rerun with --resume; `kgscale run` resumes it by itself): {_root_cause(exc)}") from None
    if result.checkpoint is None:
        raise TrainError(f"training ended without a checkpoint in {run_dir}")
    with timer("write"), result.checkpoint.as_directory() as ckpt:
        ckpt = Path(ckpt)
        if not (ckpt / HF_DIR).is_dir():
            raise TrainError(f"the last checkpoint {ckpt} has no exported model; the run did not reach its last step")
        history = [json.loads(x) for x in (ckpt / METRICS).read_text().splitlines() if x.strip()]
        state = json.loads((ckpt / "trainer_state.json").read_text())
        with output.writing() as tmp:
            for item in (ckpt / HF_DIR).iterdir():
                place_tree(item, tmp / item.name)
            shutil.copy2(ckpt / METRICS, tmp / METRICS)
            shutil.copy2(run_dir / "train_config.yaml", tmp / "train_config.yaml")
            manifest = _manifest(output, cfg, pre, history, state, table.num_rows, truncated, rejects, run_dir,
                                 result.checkpoint.path, resume, started)
    return manifest


def _root_cause(exc: BaseException) -> str:
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank, err = sorted(failures.items())[0]
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        return f"rank {rank}: {lines[-1] if lines else err}"
    return str(exc).strip().splitlines()[-1]


def _manifest(output: StageOutput, cfg: TrainConfig, pre: Preflight, history: list[dict], state: dict, samples: int,
              truncated: int, rejects: SampleRejects, run_dir: Path, checkpoint: str, resume: bool,
              started: float) -> dict:
    steps = [r for r in history if "step" in r and "loss" in r]
    resumed = [r for r in history if r.get("event") in ("resumed", "restarted") and r.get("time", 0) >= started]
    failures_recovered = max(0, len(resumed) - (1 if resume else 0))
    t = cfg.train
    return output.finish(
        rejects,
        objective=cfg.objective.name,
        model={"source": cfg.model.model, "kind": pre.kind, "lora": cfg.model.lora.enabled},
        strategy=t.strategy if t.strategy == "ddp" else f"deepspeed-zero{t.zero_stage}",
        workers=t.num_workers,
        steps=state["step"],
        epochs=state["epoch"],
        samples={"used": samples, "truncated": truncated},
        loss={"first": steps[0]["loss"] if steps else None, "last": steps[-1]["loss"] if steps else None},
        final_metrics=steps[-1] if steps else {},
        resumed_from_steps=[r["step"] for r in resumed],
        failures_recovered=failures_recovered,
        run_dir=str(run_dir),
        checkpoint=str(checkpoint),
        config=cfg.model_dump(mode="json"),
    )


def summary(manifest: dict, out: Path) -> str:
    loss, s, fm = manifest["loss"], manifest["samples"], manifest["final_metrics"]
    lora = "LoRA" if manifest["model"]["lora"] else "full fine-tuning"
    text = (f"Trained {manifest['objective']} on {manifest['model']['source']} ({lora}) for {manifest['steps']} steps "
            f"with {manifest['workers']} workers ({manifest['strategy']}): loss {loss['first']:.4f} -> {loss['last']:.4f}; "
            f"{fm.get('tokens_per_s', 0):,.0f} tokens/s and {fm.get('samples_per_s', 0):,.1f} samples/s at the end; "
            f"{s['used']:,} samples ({manifest['rejected']['total']:,} input rows rejected, {s['truncated']:,} truncated)")
    if manifest["resumed_from_steps"]:
        text += f"; resumed from step(s) {', '.join(map(str, manifest['resumed_from_steps']))}"
    if manifest["failures_recovered"]:
        text += f" after {manifest['failures_recovered']} worker failure(s)"
    text += (f"; model written to {out}" + (f" (adapter in {out}/adapter)" if manifest["model"]["lora"] else "")
             + f", checkpoints in {manifest['run_dir']}; {manifest['timings_s']['total']:.1f} s.")
    return text
