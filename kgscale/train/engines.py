"""How a worker steps the model: DeepSpeed ZeRO 0-3 or plain DDP, behind one
small interface so that the training loop does not care which.

``micro_step(batch)`` runs forward and backward on one micro-batch and an
optimiser step when the micro-batch closes a gradient-accumulation window;
``save``/``load`` write and read the full training state (weights or LoRA
adapters, optimiser, schedule) of this rank; ``model_state_dict`` gathers the
full backbone weights on rank 0 for export (under ZeRO-3 every rank takes
part).
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch
from torch import nn

from kgscale.objectives.base import ObjectiveOutput, TrainModule
from kgscale.train.config import TrainSettings


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio``
    at ``total``. ``step`` counts optimiser steps taken so far (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on biases, norms or the temperature."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(module: nn.Module, cfg: TrainSettings):
    groups = param_groups(module, cfg.weight_decay)
    # torch's fused AdamW (one kernel over every tensor) where every trained
    # tensor allows it: on a CPU the per-tensor loop it replaces took 15 ms of
    # a 100-160 ms quickstart step (MiniLM's top three layers, 48 tensors,
    # 5.3M values: 15 ms against 1.6 ms fused, measured here); same update rule
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio))
    return opt, sched


def deepspeed_config(cfg: TrainSettings, precision: str) -> dict:
    """The DeepSpeed config for a run (the optimizer is passed as an object).
    DeepSpeed's own bf16 mode (bf16 weights, fp32 master copy) is for GPUs;
    on a CPU bf16 is autocast around the forward pass (:func:`autocast`)."""
    # buckets of 5e7 elements (DeepSpeed's default is 5e8: 2 GB of fp32 per
    # bucket, which on a CPU worker would dwarf the model states ZeRO saves)
    zero: dict = {"stage": cfg.zero_stage, "reduce_bucket_size": int(5e7), "allgather_bucket_size": int(5e7)}
    if cfg.zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if cfg.zero_stage == 3:
        # keep few gathered parameters alive between uses (DeepSpeed's defaults,
        # 1e9 elements, would keep a whole small model gathered on every worker,
        # which is ZeRO-0's memory plus the partitions)
        zero.update(stage3_param_persistence_threshold=int(1e4), stage3_max_live_parameters=int(1e7),
                    stage3_max_reuse_distance=int(1e7), stage3_prefetch_bucket_size=int(1e7),
                    stage3_gather_16bit_weights_on_model_save=False)
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "gradient_clipping": cfg.grad_clip or 0.0,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16" and cfg.use_gpu},
        # a torch optimizer (DeepSpeed's fused ones need a GPU build) is fine under ZeRO
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def autocast(precision: str, device: torch.device | str):
    """bf16 autocast for the forward pass (matmuls in bf16, losses cast up to
    fp32 by the objectives), or nothing for fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu() for n, p in module.named_parameters() if p.requires_grad}


class DeepSpeedEngine:
    def __init__(self, module: TrainModule, cfg: TrainSettings, precision: str) -> None:
        import deepspeed

        self.cfg = cfg
        opt, sched = make_optimizer(module, cfg)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=opt, lr_scheduler=sched, config=deepspeed_config(cfg, precision),
            dist_init_required=False)
        self.module: TrainModule = self.engine.module
        # LoRA: frozen base weights are not part of the training state
        self.partial = any(not p.requires_grad for p in module.parameters())
        # on a CPU, bf16 is autocast (DeepSpeed's bf16 mode is for GPUs)
        self.autocast_precision = precision if not cfg.use_gpu else "fp32"
        self.device = next(module.parameters()).device

    def micro_step(self, batch: dict[str, torch.Tensor]) -> tuple[ObjectiveOutput, bool]:
        with autocast(self.autocast_precision, self.device):
            out = self.engine(batch)
        self.engine.backward(out.loss)
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        return out, boundary

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", exclude_frozen_parameters=self.partial)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed", load_module_strict=not self.partial)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {directory}")

    def model_state_dict(self, rank: int) -> dict[str, torch.Tensor] | None:
        """The whole module's weights on rank 0 (ZeRO-3 gathers them; every rank must call)."""
        ctx = contextlib.nullcontext()
        if self.cfg.zero_stage == 3:
            import deepspeed

            ctx = deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
        with ctx:
            if rank != 0:
                return None
            return {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()}


class DDPEngine:
    """Plain DistributedDataParallel with AdamW, the warmup + cosine schedule,
    accumulation (gradients are all-reduced once per window) and clipping; a
    single worker trains the module without the DDP wrapper."""

    def __init__(self, module: TrainModule, cfg: TrainSettings, precision: str, device: torch.device) -> None:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.cfg, self.device = cfg, device
        self.module = module.to(device)
        # one worker has nothing to synchronise: DDP's buffer broadcast before
        # every forward and its gradient bucket copies cost 6% of a quickstart
        # step (measured in one process, alternating), so it runs the module itself
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.ddp = DDP(self.module, device_ids=[device.index] if device.type == "cuda" else None) \
            if self.distributed else self.module
        self.optimizer, self.scheduler = make_optimizer(self.module, cfg)
        self.precision = precision
        self.micro = 0

    def micro_step(self, batch: dict[str, torch.Tensor]) -> tuple[ObjectiveOutput, bool]:
        boundary = (self.micro + 1) % self.cfg.grad_accum_steps == 0
        sync = contextlib.nullcontext() if boundary or not self.distributed else self.ddp.no_sync()
        with sync:
            with autocast(self.precision, self.device):
                out = self.ddp(batch)
            (out.loss / self.cfg.grad_accum_steps).backward()
        self.micro += 1
        if boundary:
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in self.module.parameters() if p.requires_grad], self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return out, boundary

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save(self, directory: Path) -> None:
        import torch.distributed as dist

        if not dist.is_initialized() or dist.get_rank() == 0:
            torch.save({"module": _trainable_state(self.module), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "micro": self.micro},
                       os.path.join(directory, "ddp_state.pt"))

    def load(self, directory: Path) -> None:
        # tensors, numbers and lists only: no pickled code runs while loading
        state = torch.load(os.path.join(directory, "ddp_state.pt"), map_location=self.device, weights_only=True)
        missing = set(_trainable_state(self.module)) - set(state["module"])
        if missing:
            raise KeyError(f"the checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}")
        self.module.load_state_dict(state["module"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro = state["micro"]

    def model_state_dict(self, rank: int) -> dict[str, torch.Tensor] | None:
        if rank != 0:
            return None
        return {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()}


def make_engine(module: TrainModule, cfg: TrainSettings, precision: str, device: torch.device):
    if cfg.strategy == "ddp":
        return DDPEngine(module, cfg, precision, device)
    return DeepSpeedEngine(module.to(device), cfg, precision)
