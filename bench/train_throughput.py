"""Training throughput: Ray Train + DeepSpeed against a plain PyTorch loop.

One run measures, on the same model, objective and tokenised data:

1. a plain single-process PyTorch loop (what a user would write without Ray:
   the model, the objective, AdamW, the same micro-batches in the same order
   as the Ray worker takes them), and
2. ``kgscale train`` through Ray Train with one worker and DeepSpeed ZeRO-0
   (``--strategy ddp``: torch DDP, as the quickstart trains), given the same
   CPU threads (or GPU),

alternating them ``--repeats`` times. Each measures tokens/s over ``--steps``
optimiser steps after ``--steps`` warmup steps (the Ray side logs a metrics
line every ``--log-every`` steps, the default setting's 1, so what the loop
does at a log line is inside the measurement; its worker start-up and the
final export are not). Then, with ``--workers`` workers, the peak
memory per worker and tokens/s for ZeRO stages 0 to 3 (full fine-tuning by
default, so that there are optimiser states to partition). With
``--precisions fp32 bf16`` it also trains the same seed through Ray Train in
each precision (bf16: autocast on a CPU with bf16 matrix units, DeepSpeed's
bf16 on a GPU) and reports tokens/s, their ratio, and how closely the bf16
loss curve tracks the fp32 one step by step.

Prints a table and a final JSON line: medians, the ratio Ray/plain and the
overhead (goal: at most 10%).

    python bench/train_throughput.py --snapshot runs/wn18rr [--model smollm2-135m-instruct]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch


def build_config(args, out: Path, steps: int | None = None, precision: str | None = None, **train) -> dict:
    steps = steps or args.steps
    return {
        "objective": {"name": "kalm", "lm_weight": 0.01} if args.objective == "kalm" else {"name": args.objective},
        "model": {"model": args.model, "lora": {"enabled": not args.full}, "precision": precision or args.precision},
        "data": {"snapshot": args.snapshot, "max_samples": args.samples, "max_length": args.max_length, "seed": 0},
        "train": {"out": str(out), "micro_batch_size": args.micro_batch, "max_steps": 2 * steps,
                  "log_every": steps, "checkpoint_every": 10**6, "lr": 1e-4, **train},
        "ray": {"progress_bars": False},
    }


def plain_loop(cfg, ds, steps: int, threads: int) -> dict:
    """The baseline: one process, no Ray, no DeepSpeed."""
    from kgscale.models.backbone import infer_kind, resolve
    from kgscale.models.attention import training_attention
    from kgscale.models.training import load_for_training, prepare_tokenizer, resolve_precision
    from kgscale.objectives import TrainModule, build_objective, objective_class
    from kgscale.samples.collate import collate
    from kgscale.train.engines import autocast, make_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    obj_cls = objective_class(cfg.objective.name)
    tok = prepare_tokenizer(cfg.model, obj_cls.special_tokens)
    attention = training_attention(cfg.model.attention, False, cfg.data.max_length)  # as the Ray worker resolves it
    model = load_for_training(cfg.model.model_copy(update={"attention": attention}), tokenizer=tok,
                              default_targets=obj_cls.default_lora_targets)
    module = TrainModule(model, build_objective(cfg.objective, kind=infer_kind(resolve(cfg.model))))
    precision = resolve_precision(cfg.model.precision, False)
    opt, sched = make_optimizer(module, cfg.train)
    # the micro-batches the Ray worker takes (its epoch order, rows grouped by
    # length as data.group_by_length says), so that both pad alike
    from kgscale.train.loop import _load_rows, _row_lengths
    from kgscale.train.order import epoch_batches

    rows = _load_rows(ds, 0, 1)
    mb = cfg.train.micro_batch_size
    order = epoch_batches(_row_lengths(rows), mb, len(rows["row"]) // mb, cfg.train.seed, 0, 0,
                          group_by_length=cfg.data.group_by_length)
    batches = [collate({k: v[sel] for k, v in rows.items()}, tok.pad_token_id, module.objective.batch_keys)
               for sel in order]
    tokens = 0
    start = None
    for step in range(2 * steps):
        if step == steps:
            tokens, start = 0, time.perf_counter()
        batch, n = batches[step % len(batches)]
        with autocast(precision, "cpu"):
            out = module(batch)
        out.loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], cfg.train.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += n
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": tokens / elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ray_run(args, tmp: Path, name: str, steps: int | None = None, precision: str | None = None,
            log_every: int | None = None, **train) -> dict:
    from kgscale.config import build
    from kgscale.train.config import TrainConfig
    from kgscale.train.run import run_train

    steps = steps or args.steps
    data = build_config(args, tmp / name, steps, precision)
    if log_every:
        data["train"]["log_every"] = log_every
    data["train"].update(train)
    cfg = build(TrainConfig, data)
    manifest = run_train(cfg, overwrite=True)
    rows = [json.loads(x) for x in (tmp / name / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    # the timed steps: every window after the warmup's (each window's wall time
    # includes whatever the loop did between its log lines)
    timed = [r for r in rows if r["step"] > steps]
    seconds = sum(r["window_s"] for r in timed)
    last = timed[-1]
    return {"tokens_per_s": sum(r["tokens_per_s"] * r["window_s"] for r in timed) / seconds,
            "peak_memory_mb": last["peak_memory_mb"], "memory_mb": last["memory_mb"],
            "tensor_memory_mb": last.get("tensor_memory_mb"), "loss": manifest["loss"],
            "s_per_step": seconds / steps, "losses": [r["loss"] for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description="Ray Train + DeepSpeed vs a plain PyTorch loop: tokens/s and memory")
    p.add_argument("--snapshot", required=True)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--objective", default="kalm", choices=["kalm", "kalm_contrastive"],
                   help="kalm (a causal LM) or kalm_contrastive (an encoder too: --model all-minilm-l6-v2 --full)")
    p.add_argument("--full", action="store_true", help="full fine-tuning in the throughput part (default LoRA)")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (and as many warmup steps)")
    p.add_argument("--repeats", type=int, default=3, help="plain/Ray pairs (0: only the ZeRO memory part)")
    p.add_argument("--log-every", type=int, default=1,
                   help="the Ray side's train.log_every (the default's: a metrics line every step), so that "
                        "what the loop does at a log line is inside the measurement")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the plain loop = CPUs of the Ray worker")
    p.add_argument("--workers", type=int, default=2, help="workers for the ZeRO memory part (0 skips it)")
    p.add_argument("--memory-lora", action="store_true", help="LoRA in the ZeRO memory part (default full fine-tuning)")
    p.add_argument("--memory-steps", type=int, default=1, help="timed (and warmup) steps a ZeRO stage runs")
    p.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3], help="ZeRO stages of the memory part")
    p.add_argument("--strategy", default="deepspeed", choices=["deepspeed", "ddp"],
                   help="the Ray side's train.strategy in the plain/Ray and precision parts (ZeRO-0 under deepspeed)")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"],
                   help="precision of the plain/Ray comparison")
    p.add_argument("--precisions", nargs="*", default=[], choices=["fp32", "bf16"],
                   help="also train the same seed in each precision (tokens/s, loss curves)")
    args = p.parse_args()

    from kgscale.config import build
    from kgscale.ray_session import RayConfig, ensure_ray
    from kgscale.samples.pipeline import sample_table, tokenized_dataset, tokenizer_stage
    from kgscale.samples.rejects import SampleRejects
    from kgscale.train.config import TrainConfig
    from kgscale.train.run import preflight

    import ray

    # The plain loop keeps its CPUs busy in this process; on a small shared
    # machine that can starve Ray's own processes long enough for the node to
    # miss its health checks and be declared dead. Be patient with them.
    ray.init(include_dashboard=False, _system_config={"health_check_period_ms": 5000,
                                                      "health_check_failure_threshold": 20})
    ensure_ray(RayConfig(progress_bars=False))
    tmp = Path(tempfile.mkdtemp(prefix="kgscale-bench-"))
    cfg = build(TrainConfig, build_config(args, tmp / "plain"))
    pre = preflight(cfg)
    from kgscale.objectives import objective_class

    stage, kwargs = tokenizer_stage(cfg, objective_class(cfg.objective.name).special_tokens, None, pre.kind)
    ds, _ = tokenized_dataset(sample_table(cfg, pre.snapshot, SampleRejects()), stage, kwargs)

    engine = {"strategy": "ddp"} if args.strategy == "ddp" else {"strategy": "deepspeed", "zero_stage": 0}
    ray_name = "Ray Train + DDP" if args.strategy == "ddp" else "Ray Train + DeepSpeed"
    plain, ray_ = [], []
    for i in range(args.repeats):  # alternate, so that load changes hit both alike
        plain.append(plain_loop(cfg, ds, args.steps, args.threads))
        ray_.append(ray_run(args, tmp, f"ray{i}", log_every=args.log_every, num_workers=1,
                            cpus_per_worker=args.threads, **engine))
        print(f"repeat {i + 1}/{args.repeats}: plain {plain[-1]['tokens_per_s']:,.0f} tok/s, "
              f"{ray_name} {ray_[-1]['tokens_per_s']:,.0f} tok/s", flush=True)
    plain_tps = statistics.median(r["tokens_per_s"] for r in plain) if plain else float("nan")
    ray_tps = statistics.median(r["tokens_per_s"] for r in ray_) if ray_ else float("nan")
    ratio = ray_tps / plain_tps

    by_precision = {}
    for prec in args.precisions:
        r = ray_run(args, tmp, f"prec_{prec}", precision=prec, log_every=1, num_workers=1,
                    cpus_per_worker=args.threads, **engine)
        by_precision[prec] = {"tokens_per_s": round(r["tokens_per_s"], 1), "losses": [round(x, 4) for x in r["losses"]]}
        print(f"{prec}: {r['tokens_per_s']:,.0f} tok/s (Ray Train, 1 worker, {args.threads} threads)", flush=True)
    if {"fp32", "bf16"} <= set(by_precision):
        f, b = by_precision["fp32"], by_precision["bf16"]
        diffs = [abs(x - y) / max(abs(x), 1e-9) for x, y in zip(f["losses"], b["losses"])]
        by_precision["bf16_over_fp32"] = round(b["tokens_per_s"] / f["tokens_per_s"], 3)
        by_precision["loss_max_relative_difference"] = round(max(diffs), 4)

    zero = {}
    if args.workers:
        mem_args = argparse.Namespace(**{**vars(args), "full": not args.memory_lora})
        for s in args.stages:
            r = ray_run(mem_args, tmp, f"zero{s}", args.memory_steps, num_workers=args.workers, cpus_per_worker=1,
                        zero_stage=s, measure_tensor_memory=True)
            zero[s] = {"tensor_memory_mb_per_worker": round(r["tensor_memory_mb"], 1),
                       "peak_memory_mb_per_worker": round(r["peak_memory_mb"], 1),
                       "memory_after_steps_mb_per_worker": round(r["memory_mb"], 1),
                       "tokens_per_s": round(r["tokens_per_s"], 1)}
            print(f"ZeRO-{s}, {args.workers} workers: live tensors {r['tensor_memory_mb']:,.0f} MB, RSS peak "
                  f"{r['peak_memory_mb']:,.0f} MB, RSS after the steps {r['memory_mb']:,.0f} MB per worker, "
                  f"{r['tokens_per_s']:,.0f} tok/s", flush=True)

    print()
    print(f"model {args.model} ({'full' if args.full else 'LoRA'}), micro-batch {args.micro_batch}, "
          f"{args.steps} timed steps, medians of {args.repeats}")
    print(f"  plain PyTorch loop, {args.threads} threads:      {plain_tps:10,.0f} tokens/s")
    print(f"  {ray_name + (' ZeRO-0' if args.strategy == 'deepspeed' else '') + ', 1 worker:':39s} "
          f"{ray_tps:10,.0f} tokens/s  (ratio {ratio:.3f}, "
          f"overhead {100 * (1 - ratio):+.1f}%)")
    if "bf16_over_fp32" in by_precision:
        f, b = by_precision["fp32"], by_precision["bf16"]
        print(f"  fp32 {f['tokens_per_s']:,.0f} tokens/s, bf16 {b['tokens_per_s']:,.0f} tokens/s: "
              f"bf16 x{by_precision['bf16_over_fp32']:.2f}; loss per step, fp32 vs bf16 (same seed):")
        for i, (x, y) in enumerate(zip(f["losses"], b["losses"]), 1):
            print(f"    step {i:3d}  {x:8.4f}  {y:8.4f}")
        print(f"  largest relative difference {100 * by_precision['loss_max_relative_difference']:.2f}%")
    for s, z in zero.items():
        print(f"  ZeRO-{s} x {args.workers} workers ({'LoRA' if args.memory_lora else 'full'}): "
              f"{z['tensor_memory_mb_per_worker']:8,.0f} MB live tensors, RSS {z['peak_memory_mb_per_worker']:8,.0f} MB "
              f"peak / {z['memory_after_steps_mb_per_worker']:8,.0f} MB after the steps, per worker; "
              f"{z['tokens_per_s']:8,.0f} tokens/s")
    print(json.dumps({"bench": "train_throughput", "model": args.model, "lora": not args.full, "strategy": args.strategy,
                      "plain_tokens_per_s": round(plain_tps, 1), "ray_tokens_per_s": round(ray_tps, 1),
                      "ratio": round(ratio, 4), "overhead_pct": round(100 * (1 - ratio), 2),
                      "plain_runs": [round(r["tokens_per_s"], 1) for r in plain],
                      "ray_runs": [round(r["tokens_per_s"], 1) for r in ray_],
                      "zero_memory": zero, "memory_full_finetune": not args.memory_lora,
                      "precision": args.precision, "by_precision": by_precision}))


if __name__ == "__main__":
    main()
