"""The per-worker training loop: what every Ray Train worker runs.

One worker: build the tokenizer, the backbone (LoRA or full) and the
objective; wrap them in DeepSpeed or DDP; resume from the latest checkpoint if
Ray Train has one (after a worker failure, or a run started with
``--resume``); then take micro-batches from this worker's shard of the
tokenised Ray Dataset until ``train.max_steps`` optimiser steps are done,
logging metrics every ``log_every`` steps (rank 0: ``metrics.jsonl`` and the
console), checkpointing every ``checkpoint_every`` steps and at the end, where
rank 0 also writes the model in Hugging Face format into the final checkpoint.
Only checkpoints are reported to Ray Train, with the metrics of their step.

Ray Train's ``report`` is collective: every rank calls it at the same steps,
with its own checkpoint directory (DeepSpeed writes one shard per rank; Ray
Train merges them into one checkpoint).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

STATE = "trainer_state.json"
HF_DIR = "hf"
FAULT_MARKER = ".fault_injected"


@dataclass
class LoopState:
    step: int = 0  # optimiser steps done
    epoch: int = 0
    micro_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    tokens: int = 0  # this worker's tokens so far
    samples: int = 0

    def save(self, directory: Path) -> None:
        (Path(directory) / STATE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: Path) -> "LoopState":
        return cls(**json.loads((Path(directory) / STATE).read_text()))


def train_loop_per_worker(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch

    from kgscale.models.towers import TwoTowers
    from kgscale.models.attention import training_attention
    from kgscale.models.training import load_for_training, prepare_tokenizer, resolve_precision, trainable_parameters
    from kgscale.objectives import TrainModule, build_objective, objective_class
    from kgscale.samples.collate import collate
    from kgscale.train.config import TrainConfig
    from kgscale.train.engines import deepspeed_config, make_engine
    from kgscale.train.export import save_hf_model, split_state
    from kgscale.train.metrics import METRICS, MetricsLog, Window, progress_line
    from kgscale.samples.tokenize import renoise
    from kgscale.train.order import batches_per_epoch, epoch_batches

    started = time.perf_counter()
    cfg = TrainConfig.model_validate(config["cfg"])
    info = config["info"]
    t, run_dir = cfg.train, Path(info["run_dir"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()

    def say(msg: str) -> None:
        # sys.stdout, not print: Ray Train patches print to also log each line,
        # which would show every progress line twice
        if rank == 0:
            sys.stdout.write(f"[kgscale train] {msg}\n")
            sys.stdout.flush()

    # --- model, objective, engine
    torch.manual_seed(t.seed)  # identical initial adapters on every rank
    precision = resolve_precision(cfg.model.precision, t.use_gpu)
    objective_cls = objective_class(cfg.objective.name)
    tokenizer = prepare_tokenizer(cfg.model, objective_cls.special_tokens)
    zero3 = deepspeed_config(t, precision) if t.strategy == "deepspeed" and t.zero_stage == 3 else None
    attention = training_attention(cfg.model.attention, t.use_gpu, cfg.data.max_length)
    model_cfg = cfg.model.model_copy(update={"attention": attention})
    model = load_for_training(model_cfg, tokenizer=tokenizer, default_targets=objective_cls.default_lora_targets,
                              kind=info["kind"], zero3_config=zero3)
    key_tower = getattr(cfg.objective, "key_tower", "shared")
    if key_tower != "shared":
        # the key tower starts as the same backbone; a frozen one needs no adapters
        key_cfg = model_cfg.model_copy(update={"lora": model_cfg.lora.model_copy(update={"enabled": False})}) \
            if key_tower == "frozen" else model_cfg
        key = load_for_training(key_cfg, tokenizer=tokenizer, default_targets=objective_cls.default_lora_targets,
                                kind=info["kind"], zero3_config=zero3)
        model = TwoTowers(model, key, frozen_key=key_tower == "frozen")
    known = info.get("known_pairs")
    objective = build_objective(cfg.objective, num_answers=info.get("num_answers"), kind=info["kind"],
                                known_pairs=torch.from_numpy(np.array(ray.get(known))) if known is not None else None)
    if info.get("bank") is not None:
        bank, valid = ray.get(info["bank"])
        objective.set_bank(torch.from_numpy(np.array(bank)).to(device), torch.from_numpy(np.array(valid)).to(device))
    trainable, total = trainable_parameters(model)
    engine = make_engine(TrainModule(model, objective), t, precision, device)
    say(f"{cfg.objective.name} on {cfg.model.model}: {trainable:,} of {total:,} parameters trained "
        f"({'LoRA' if cfg.model.lora.enabled else 'full'}), {t.strategy}"
        f"{f' ZeRO-{t.zero_stage}' if t.strategy == 'deepspeed' else ''}, {ctx.get_world_size()} workers, {precision}, "
        f"{attention if attention != 'auto' else 'default'} attention"
        f"{f', key tower {key_tower}' if key_tower != 'shared' else ''}"
        f"{', every entity a candidate (bank)' if info.get('bank') is not None else ''}; "
        f"ready in {time.perf_counter() - started:.1f} s")

    # --- resume
    log = MetricsLog(run_dir / METRICS if rank == 0 else None)
    state = LoopState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            engine.load(Path(d))
            state = LoopState.load(Path(d))
            log.restore(Path(d), state.step)
        say(f"resumed from checkpoint at step {state.step} (epoch {state.epoch})")
    else:
        log.start()
    (run_dir / "workers").mkdir(parents=True, exist_ok=True)
    (run_dir / "workers" / f"rank{rank}.pid").write_text(str(os.getpid()))

    def save_checkpoint(metrics: dict, final: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="kgscale-ckpt-") as d:
            engine.save(Path(d))
            if final:  # every rank takes part in gathering ZeRO-3 weights
                full = engine.model_state_dict(rank)
                if rank == 0:
                    _, objective_sd = split_state(full)
                    save_hf_model(full, cfg.model, tokenizer, Path(d) / HF_DIR, kind=info["kind"],
                                  default_targets=objective_cls.default_lora_targets,
                                  objective_state=objective.summarize_state(objective_sd), key_tower=key_tower)
                    if getattr(objective, "whitening", None) is not None:  # part of the model wherever it embeds
                        objective.whitening.save(Path(d) / HF_DIR)
            if rank == 0:
                state.save(Path(d))
                log.save(Path(d))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    # --- this worker's rows, in memory: a fresh seeded order every epoch
    world = ctx.get_world_size()
    rows = _load_rows(ray.train.get_dataset_shard("train"), rank, world)
    lengths = _row_lengths(rows)
    per_epoch = batches_per_epoch(info["samples"], world, t.micro_batch_size)
    if per_epoch == 0:
        raise RuntimeError("a worker's share of the data holds no full micro-batch; "
                           "lower train.micro_batch_size or raise data.max_samples")
    refresh = getattr(cfg.objective, "bank_refresh_every", 0)

    # --- train
    window = Window()
    step_timer = time.perf_counter()
    parts = ["contrastive", "accuracy", "lm", "ce", "ce_with_rationale", "kl", "description"]
    while state.step < t.max_steps:
        order = epoch_batches(lengths, t.micro_batch_size, per_epoch, t.seed, state.epoch, rank,
                              group_by_length=cfg.data.group_by_length)
        for i in range(state.micro_in_epoch, per_epoch):
            raw = {k: v[order[i]] for k, v in rows.items()}
            if info.get("epoch_noise"):  # KILM: infilling noise drawn afresh each epoch
                raw = renoise(raw, state.epoch, tokenizer.mask_token_id, tokenizer.eos_token_id, **info["epoch_noise"])
            batch, tokens = collate(raw, info["pad_id"], objective.batch_keys)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            lr = engine.lr()  # the rate this micro-batch's optimiser step uses
            try:
                out, stepped = engine.micro_step(batch)
            except torch.OutOfMemoryError as exc:
                longest = max(v.shape[-1] for k, v in batch.items() if k.endswith("input_ids"))
                raise RuntimeError(
                    f"a micro-batch of {t.micro_batch_size} samples (sequences up to {longest} tokens) does not fit "
                    "in accelerator memory: lower train.micro_batch_size (raise train.grad_accum_steps to keep the "
                    "global batch) or data.max_length, set model.gradient_checkpointing: true, or use "
                    "train.zero_stage: 3") from exc
            state.micro_in_epoch = i + 1
            state.tokens += tokens
            state.samples += t.micro_batch_size
            window.add(out.metrics, tokens, t.micro_batch_size)
            if not stepped:
                continue
            state.step += 1
            final = state.step >= t.max_steps
            if refresh and state.step % refresh == 0 and not final:
                _refresh_bank(engine.module, objective, info, device, world, rank)
            if state.step % t.log_every == 0 or final or state.step % t.checkpoint_every == 0:
                steps_in_window = max(1, window.micro // t.grad_accum_steps)
                row = {"step": state.step, "epoch": state.epoch, **window.reduce(device, t.measure_tensor_memory),
                       "lr": lr, "s_per_step": (time.perf_counter() - step_timer) / steps_in_window,
                       "time": time.time()}
                if rank == 0:
                    log.append(row)
                    say(progress_line(row, t.max_steps, parts))
                window.reset()
                step_timer = time.perf_counter()
                if final or state.step % t.checkpoint_every == 0:
                    save_checkpoint(row, final)
                # Other rows are not reported to Ray Train: a report waits until
                # the controller has taken the previous one (a queue of one, polled
                # every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s), which blocked the
                # quickstart's step loop about 0.45 s each 10 steps; rank 0's
                # metrics.jsonl and console carry every row
            _maybe_inject_fault(t.fault_injection, rank, state.step, run_dir)
            if final:
                break
        else:
            state.epoch += 1
            state.micro_in_epoch = 0
    say(f"done: {state.step} steps, {state.epoch} full epochs")


def _load_rows(shard, rank: int, world: int) -> dict[str, np.ndarray]:
    """This worker's rows of the whole dataset (every worker reads all of it:
    ``datasets_to_split=[]``), as numpy columns in row order."""
    from kgscale.train.order import local_rows

    cols: dict[str, list] = {}
    for batch in shard.iter_batches(batch_size=None, batch_format="numpy"):
        for k, v in batch.items():
            if v.ndim > 1:  # a block whose id lists are all one length comes as a 2-D array
                rows = np.empty(len(v), dtype=object)
                for i, x in enumerate(v):
                    rows[i] = x
                v = rows
            cols.setdefault(k, []).append(v)
    table = {k: np.concatenate(v) for k, v in cols.items()}
    keep = local_rows(table["row"], rank, world)
    return {k: v[keep] for k, v in table.items()}


def _row_lengths(rows: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's longest id sequence (the padding a micro-batch pays for)."""
    seqs = [v for k, v in rows.items() if k.endswith("input_ids")]
    n = len(next(iter(rows.values())))
    out = np.zeros(n, dtype=np.int64)
    for col in seqs:
        out = np.maximum(out, np.fromiter((len(x) for x in col), dtype=np.int64, count=n))
    return out


def _refresh_bank(module, objective, info: dict, device, world: int, rank: int) -> None:
    """Re-embed every entity with the current key tower: each worker its
    share of the entities, then one all-gather."""
    import ray
    import torch.distributed as dist

    from kgscale.models.embed import embed_ids
    from kgscale.models.towers import query_and_key

    views = ray.get(info["entity_views"])
    _, key_trunk, _ = query_and_key(module.model, info["kind"])
    n = len(views)
    per = -(-n // world)
    mine = views[rank * per:(rank + 1) * per]
    was_training = key_trunk.training
    key_trunk.eval()
    emb = embed_ids(key_trunk, mine, objective.pooling, info["pad_id"], device=str(device),
                    autocast_dtype=torch.bfloat16 if info.get("precision") == "bf16" else None)
    key_trunk.train(was_training)
    part = torch.zeros((per, objective.bank.shape[1]), dtype=torch.float32, device=device)
    part[: len(mine)] = torch.from_numpy(emb).to(device)
    if world > 1 and dist.is_initialized():
        parts = [torch.empty_like(part) for _ in range(world)]
        dist.all_gather(parts, part)
        full = torch.cat(parts)[:n]
    else:
        full = part[:n]
    objective.set_bank(full, objective.bank_valid)


def _maybe_inject_fault(fault, rank: int, step: int, run_dir: Path) -> None:
    """SIGKILL this worker once at the configured step (testing recovery)."""
    if fault is None or fault.rank != rank or fault.step != step:
        return
    marker = run_dir / FAULT_MARKER
    if marker.exists():
        return
    time.sleep(fault.delay_s)
    marker.write_text(f"rank {rank} killed after step {step}\n")
    sys.stdout.write(f"[kgscale train] fault injection: killing rank {rank} (pid {os.getpid()}) after step {step}\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
