"""Training metrics: averaged over the workers, written to ``metrics.jsonl``,
printed as a line a person can read, and reported to Ray Train with each
checkpoint.

Rank 0 keeps the whole history in memory and copies it into every
checkpoint, so a run that resumes (after a failure or with ``--resume``)
continues the history of the checkpoint it resumed from, not the steps that
were lost, and the final output carries the history of the run that
finished.
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import torch

METRICS = "metrics.jsonl"


def memory_mb(device: torch.device) -> float:
    """Memory in use now: allocated by torch on a GPU; the resident set of the
    worker process on CPU. Unlike the peak it shows what a ZeRO stage keeps
    between steps, not transient copies (loading, DeepSpeed's setup)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_tensor_mb() -> float:
    """Bytes of every tensor storage alive in this process (parameters,
    gradients, optimiser states, DeepSpeed's flat buffers and partitions),
    each storage counted once. On CPU this is what ZeRO partitions; the RSS
    also holds the allocator's freed-but-kept pages and every library."""
    import gc
    import warnings

    storages: dict[int, int] = {}
    with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and obj.device.type != "meta":
                    st = obj.untyped_storage()
                    storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
            except Exception:  # tensors without storage (sparse, functional wrappers)
                continue
    return sum(storages.values()) / 2**20


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on a GPU; peak resident set size of
    the worker process on CPU (what ZeRO partitioning saves shows up there)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Window:
    """Sums of per-micro-batch metrics between two log lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.micro = 0
        self.tokens = 0
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor], tokens: int, samples: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.micro += 1
        self.tokens += tokens
        self.samples += samples

    def reduce(self, device: torch.device, tensor_memory: bool = False) -> dict[str, float]:
        """Across workers: metric means, token and sample sums, max time and
        memory (with ``tensor_memory``, also the live tensor bytes: a slower
        walk over every object, for measuring ZeRO stages)."""
        import torch.distributed as dist

        keys = sorted(self.sums)
        elapsed = time.perf_counter() - self.start
        sums = torch.tensor([self.sums[k] for k in keys] + [self.micro, self.tokens, self.samples],
                            dtype=torch.float64, device=device)
        tensors = live_tensor_mb() if tensor_memory else 0.0
        maxes = torch.tensor([elapsed, peak_memory_mb(device), memory_mb(device), tensors], dtype=torch.float64,
                             device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            dist.all_reduce(maxes, op=dist.ReduceOp.MAX)
        sums, maxes = sums.tolist(), maxes.tolist()
        micro, tokens, samples = sums[-3:]
        out = {k: s / max(micro, 1) for k, s in zip(keys, sums)}
        out.update(tokens_per_s=tokens / max(maxes[0], 1e-9), samples_per_s=samples / max(maxes[0], 1e-9),
                   window_s=maxes[0], peak_memory_mb=maxes[1], memory_mb=maxes[2])
        if tensor_memory:
            out["tensor_memory_mb"] = maxes[3]
        return out


class MetricsLog:
    """Rank 0's history; ``path`` (the live file) is appended to as it grows."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[dict] = []

    def append(self, row: dict) -> None:
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def save(self, directory: Path) -> None:
        with open(Path(directory) / METRICS, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")

    def start(self) -> None:
        """A run without a checkpoint. If the live file has rows, workers failed
        before the first checkpoint and the run starts over: say so."""
        if self.path is not None and self.path.is_file() and self.path.stat().st_size:
            self.path.write_text("")
            self.append({"event": "restarted", "step": 0, "time": time.time()})

    def restore(self, directory: Path, step: int) -> None:
        """History from a checkpoint, plus a row that says the run resumed."""
        src = Path(directory) / METRICS
        self.rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()] if src.is_file() else []
        if self.path is not None:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self.append({"event": "resumed", "step": step, "time": time.time()})


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.3e}"


def progress_line(row: dict, max_steps: int, parts: list[str]) -> str:
    """``step 10/100 (10%) | loss 2.345 (contrastive 2.31, lm 4.56) | T 0.0498 |
    lr 9.8e-05 | 1,234 tok/s | 45.6 samples/s | 0.35 s/step | eta 31s``"""
    step = row["step"]
    s = f"step {step}/{max_steps} ({100 * step / max_steps:.0f}%) | loss {_fmt(row['loss'])}"
    shown = [p for p in parts if p in row and p != "loss"]
    if shown:
        s += " (" + ", ".join(f"{p} {_fmt(row[p])}" for p in shown) + ")"
    if "temperature" in row:
        s += f" | T {row['temperature']:.4f}"
    s += f" | lr {row['lr']:.2e} | {row['tokens_per_s']:,.0f} tok/s | {row['samples_per_s']:,.1f} samples/s"
    per_step = row.get("s_per_step")
    if per_step:
        eta = per_step * (max_steps - step)
        s += f" | {per_step:.2f} s/step | eta {eta:.0f}s" if eta < 120 else f" | {per_step:.2f} s/step | eta {eta / 60:.1f}min"
    return s
