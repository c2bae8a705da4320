"""The training config: ``kgscale train CONFIG``.

::

    objective: {name: kalm, margin: 0.02, temperature: 0.05, lm_weight: 0.01}
    model:     {model: smollm2-135m-instruct, lora: {r: 8, alpha: 16}}
    data:      {snapshot: runs/wn18rr, max_samples: 4096}
    train:     {out: runs/kalm, num_workers: 2, strategy: deepspeed, zero_stage: 2,
                micro_batch_size: 8, max_steps: 100, lr: 1.0e-4}
    ray:       {address: null}

Every key is documented on its field; unknown keys are errors.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, create_model, model_validator

from kgscale.config import StrictModel, runtime_setting, stage_path
from kgscale.models.training import ModelSettings
from kgscale.objectives import METHODS, objective_settings
from kgscale.objectives.method import Method
from kgscale.ray_session import RayConfig


class CommonData(StrictModel):
    """The ``data`` settings every method reads. The section holds these and
    each registered method's own (:func:`data_settings_model`)."""

    # KG snapshot (`kgscale ingest`): KaLM and KILM samples come from it
    snapshot: Path | None = stage_path("input", None)
    # rationale stage output (a directory with rationales.parquet, or the file): KALE
    rationales: Path | None = stage_path("input", None)
    # snapshot split the samples come from
    split: Literal["train", "valid", "test"] = "train"
    # keep this many samples (after a seeded shuffle); None: all
    max_samples: int | None = Field(None, ge=1)
    seed: int = 0
    # token ids per sequence, at most
    max_length: int = Field(128, ge=8)
    # a rejected input row is fatal
    strict: bool = False
    # tokenisation tasks running at once in the Ray Data pipeline
    map_tasks: int = Field(2, ge=1)
    # micro-batches of rows of similar length (within windows of the epoch's
    # random order), so a micro-batch pads little (kgscale.train.order)
    group_by_length: bool = True


DATA_DOC = """The ``data`` section: the settings every method reads
(:class:`CommonData`), then each registered method's own (its
``Method.data`` model, beside its objective in kgscale/objectives/:
KaLMData, KALEData, KILMData), one flat section. TrainConfig refuses one of
a method's own fields set away from its default for another objective."""


def data_settings_model(methods: Iterable[Method] | None = None) -> type[StrictModel]:
    """The ``data`` section's model: :class:`CommonData` and each method's
    ``data`` model (registration order; one model shared by several names
    counted once), fields in that order. ``methods``: the registered ones
    unless given. A field two of them define is an error."""
    models = list(dict.fromkeys(m.data for m in (METHODS.values() if methods is None else methods)))
    owner = {f: CommonData for f in CommonData.model_fields}
    for model in models:
        for f in model.model_fields:
            if f in owner:
                raise ValueError(f"data.{f}: defined by both {owner[f].__name__} and {model.__name__}; "
                                 "a method's data field must be its own")
            owner[f] = model
    # pydantic orders the fields of several bases from the last base to the first
    return type("DataSettings", (*reversed(models), CommonData), {"__doc__": DATA_DOC, "__module__": __name__})


class FaultInjection(StrictModel):
    """Kill one worker process (SIGKILL) once, after it finishes ``step``:
    for testing and demonstrating recovery. A marker in the run directory
    makes it happen once per run."""

    rank: int = Field(1, ge=0)
    step: int = Field(..., ge=1)
    # wait before the kill. Ray Train registers a reported checkpoint when its
    # controller next polls the workers (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S,
    # 2 s by default); a worker that dies before that poll takes its report with
    # it, and recovery starts from the checkpoint before. The default waits out
    # one poll so a test knows which checkpoint the run resumes from.
    delay_s: float = Field(3.0, ge=0)


class TrainSettings(StrictModel):
    # output model directory; checkpoints go to "<out>.ray/" beside it
    out: Path | None = stage_path("output", None)
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    # CPUs reserved per worker (its torch threads)
    cpus_per_worker: float = Field(1, gt=0)
    # how Ray places the workers: PACK fills a node first; SPREAD / STRICT_SPREAD
    # put them on different nodes (one worker per node with STRICT_SPREAD)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    # deepspeed: ZeRO stage `zero_stage`; ddp: plain DistributedDataParallel
    strategy: Literal["deepspeed", "ddp"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    # samples per worker per forward pass
    micro_batch_size: int = Field(8, ge=1)
    # micro-batches per optimiser step
    grad_accum_steps: int = Field(1, ge=1)
    # optimiser steps in the run
    max_steps: int = Field(100, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.001, ge=0)
    # linear warmup steps, then cosine decay to min_lr_ratio * lr at max_steps
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    # gradient norm clipping; null: none
    grad_clip: float | None = Field(1.0, gt=0)
    # checkpoint every N optimiser steps (and always at the end)
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    # worker failures to recover from (from the last checkpoint); -1: unlimited
    max_failures: int = Field(0, ge=-1)
    # report metrics every N optimiser steps
    log_every: int = Field(1, ge=1)
    seed: int = 0
    # also log the bytes of live tensors per worker (a walk over every object
    # at each log step: for measuring what ZeRO stages keep, not for every run)
    measure_tensor_memory: bool = False
    fault_injection: FaultInjection | None = None

    def global_batch(self) -> int:
        return self.num_workers * self.micro_batch_size * self.grad_accum_steps


class TrainConfigBase(StrictModel):
    """The sections of a training config; ``objective`` and ``data`` are
    typed by :func:`train_config_model` from the registered objectives."""

    objective: StrictModel
    model: ModelSettings
    data: CommonData = CommonData()
    train: TrainSettings = TrainSettings()
    ray: RayConfig = runtime_setting(default_factory=RayConfig)

    @model_validator(mode="after")
    def _data_suits_the_objective(self):
        from kgscale.train.methods import foreign_data_settings

        why = foreign_data_settings(self.objective.name, self.data)
        if why:
            raise ValueError(why)
        return self

    def record(self) -> dict:
        """Every setting, as the run's ``train_config.yaml`` keeps it: a file
        ``kgscale train`` takes back as it is (the ZeRO stage is left out under
        DDP, where it does not apply and a written one is refused)."""
        data = self.model_dump(mode="json")
        if self.train.strategy == "ddp":
            data["train"].pop("zero_stage", None)
        return data


def train_config_model() -> type[TrainConfigBase]:
    """The training config's model for the objectives registered now: the
    ``objective`` union of their settings models and the ``data`` section of
    the common settings and their data models. :data:`TrainConfig` is this,
    built once at import; a test that registers an objective builds another."""
    data = data_settings_model()
    return create_model("TrainConfig", __base__=TrainConfigBase, __module__=__name__,
                        objective=(objective_settings(), ...), data=(data, data()))


TrainConfig = train_config_model()
DataSettings = TrainConfig.model_fields["data"].annotation
