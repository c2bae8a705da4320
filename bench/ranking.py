"""Filtered ranking: kgscale's chunked ranking against a straightforward dense one.

For WN18RR (6,268 test queries over 40,943 entities) and FB15k-237 (40,932
queries over 14,541 entities), at embedding dimensions 384 and 768: random
unit embeddings (the ranking cost does not depend on the model), the real
filter sets of train + valid + test from the snapshots. Each (dataset, dim,
implementation) runs in its own process, so its peak memory is its own;
times are medians of ``--repeats`` calls. The machine's matrix-multiply
throughput (fp32 GEMM of the same shapes, median) is measured in the same
run (beside every timed call), and ranking throughput is reported as the
fraction of it that ranking achieves (2 * queries * entities * dim FLOPs per
call), by wall clock and by CPU time of the process (the latter stays
meaningful when other processes share the cores).

    PYTHONPATH=$PWD python bench/ranking.py [--repeats 3] [--snapshots DIR]

Prints a table and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"wn18rr": "wn18rr", "fb15k237": "fb15k237"}
DIMS = (384, 768)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _problem(snapshot: str, dim: int, seed: int = 0):
    from kgscale.kg.answers import AnswerIndex
    from kgscale.eval.ranking import QueryFilters
    from kgscale.kg.snapshot import Snapshot

    snap = Snapshot(snapshot)
    t = snap.triples("test")
    h, r, tl = (t[c].to_numpy().astype(np.int64) for c in ("head", "relation", "tail"))
    entity, rel = np.concatenate([h, tl]), np.concatenate([r, r])
    inverse = np.concatenate([np.zeros(len(h), np.int64), np.ones(len(h), np.int64)])
    targets = np.concatenate([tl, h])
    index = AnswerIndex.from_snapshot(snap)
    start, stop = index.spans(entity, rel, inverse)
    filters = QueryFilters(start=start, stop=stop, answers=index.answers)
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((snap.num_entities, dim), dtype=np.float32)
    q = rng.standard_normal((len(targets), dim), dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, e, targets, filters


def _timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def _gemm_seconds(dim: int, cols: int, rows: int = 4096) -> tuple[float, float]:
    """(wall, CPU) seconds of one fp32 GEMM [rows, dim] x [dim, cols], best of
    3: the machine's matrix-multiply throughput, measured beside each call."""
    import torch

    a, b = torch.randn(rows, dim), torch.randn(cols, dim)
    out = torch.empty(rows, cols)
    torch.mm(a, b.T, out=out)
    runs = [_timed(lambda: torch.mm(a, b.T, out=out))[:2] for _ in range(3)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def worker(args) -> None:
    """One (dataset, dim, implementation) in this process: prints one JSON line.

    The first call measures peak memory (nothing else allocated yet). The
    machine is shared, so its speed drifts: every timed call after it is
    paired with a GEMM measured just before it, and the fraction of matmul
    throughput is the median over the pairs."""
    from kgscale.eval.ranking import filtered_ranks
    from kgscale.eval.reference import dense_ranks

    q, e, targets, filters = _problem(args.snapshot, args.dim)
    n, num = len(targets), int(e.shape[0])
    flops = 2 * n * num * args.dim
    base = _rss_mib()
    fn = {"kgscale": lambda: filtered_ranks(q, e, targets, filters, chunk_mb=args.chunk_mb, device="cpu"),
          "dense": lambda: dense_ranks(q, e, targets, filters)}[args.impl]
    # the first call alone: its peak memory, before any GEMM buffer exists
    ranks = fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, gemm_gflops, fractions, cpu_fractions = [], [], [], []
    gemm_flops = 2 * 4096 * num * args.dim
    for _ in range(args.repeats):
        g_wall, g_cpu = _gemm_seconds(args.dim, num)
        t, c, ranks = _timed(fn)
        times.append(t)
        gemm_gflops.append(gemm_flops / g_wall / 1e9)
        fractions.append((flops / t) / (gemm_flops / g_wall))
        # per CPU-second: robust when other processes take the cores for a while
        cpu_fractions.append((flops / c) / (gemm_flops / g_cpu))
    np.save(args.ranks_out, ranks)
    print(json.dumps({"seconds": statistics.median(times), "all_seconds": times, "peak_rss_mib": peak,
                      "inputs_rss_mib": base, "queries": n, "entities": num,
                      "gemm_gflops": statistics.median(gemm_gflops), "fraction_of_matmul": statistics.median(fractions),
                      "all_fractions": fractions, "cpu_fraction_of_matmul": statistics.median(cpu_fractions),
                      "all_cpu_fractions": cpu_fractions, "filter_entries": int((filters.stop - filters.start).sum())}))


def _run(cmd: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _ensure_snapshot(name: str, snapshots: Path, datasets: Path) -> Path:
    out = snapshots / name
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "kgscale.cli", "ingest", str(datasets / DATASETS[name]), "--out", str(out),
                        "ray.progress_bars=false"], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-mb", type=float, default=256.0)
    p.add_argument("--snapshots", default="/tmp/kgscale-bench-snapshots", help="where the snapshots are (made if missing)")
    p.add_argument("--datasets", default=str(Path(os.environ.get("KGSCALE_SHARED", ROOT.parent / "shared")) / "datasets"))
    p.add_argument("--only", choices=sorted(DATASETS), help="one dataset only")
    p.add_argument("--skip-dense", action="store_true")
    # worker mode
    p.add_argument("--impl", choices=["kgscale", "dense"])
    p.add_argument("--snapshot")
    p.add_argument("--dim", type=int)
    p.add_argument("--ranks-out")
    args = p.parse_args()
    if args.impl:
        worker(args)
        return

    import torch

    results = []
    tmp = Path(args.snapshots) / "ranks"
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for name in [args.only] if args.only else list(DATASETS):
        snap = _ensure_snapshot(name, Path(args.snapshots), Path(args.datasets))
        for dim in DIMS:
            row = {"dataset": name, "dim": dim}
            k = _run(["--impl", "kgscale", "--snapshot", str(snap), "--dim", str(dim), "--repeats", str(args.repeats),
                      "--chunk-mb", str(args.chunk_mb), "--ranks-out", str(tmp / "kgscale.npy")])
            flops = 2 * k["queries"] * k["entities"] * dim
            row.update(queries=k["queries"], entities=k["entities"], filter_entries=k["filter_entries"],
                       matmul_gflops=k["gemm_gflops"], kgscale_s=k["seconds"], kgscale_queries_per_s=k["queries"] / k["seconds"],
                       kgscale_gflops=flops / k["seconds"] / 1e9, kgscale_fraction_of_matmul=k["fraction_of_matmul"],
                       kgscale_cpu_fraction_of_matmul=k["cpu_fraction_of_matmul"],
                       kgscale_peak_mib=k["peak_rss_mib"], kgscale_peak_above_inputs_mib=k["peak_rss_mib"] - k["inputs_rss_mib"])
            if not args.skip_dense:
                d = _run(["--impl", "dense", "--snapshot", str(snap), "--dim", str(dim), "--repeats", str(args.repeats),
                          "--ranks-out", str(tmp / "dense.npy")])
                a, b = np.load(tmp / "kgscale.npy"), np.load(tmp / "dense.npy")
                row.update(dense_s=d["seconds"], dense_queries_per_s=d["queries"] / d["seconds"],
                           dense_fraction_of_matmul=d["fraction_of_matmul"],
                           dense_cpu_fraction_of_matmul=d["cpu_fraction_of_matmul"],
                           dense_peak_mib=d["peak_rss_mib"], dense_peak_above_inputs_mib=d["peak_rss_mib"] - d["inputs_rss_mib"],
                           speedup=d["seconds"] / k["seconds"], memory_ratio=d["peak_rss_mib"] / k["peak_rss_mib"],
                           ranks_equal=float(np.mean(a == b)), max_rank_difference=float(np.abs(a - b).max()))
            results.append(row)
            line = (f"{name:9s} d={dim:4d} {row['queries']:6,} q x {row['entities']:6,} e | kgscale {row['kgscale_queries_per_s']:8,.0f} q/s "
                    f"{row['kgscale_fraction_of_matmul']:.2f} of matmul ({row['matmul_gflops']:.0f} GFLOP/s; "
                    f"{row['kgscale_cpu_fraction_of_matmul']:.2f} per CPU-second), "
                    f"peak {row['kgscale_peak_mib']:,.0f} MiB")
            if "dense_s" in row:
                line += (f" | dense {row['dense_queries_per_s']:8,.0f} q/s, peak {row['dense_peak_mib']:,.0f} MiB | "
                         f"speedup {row['speedup']:.2f}x, memory {row['memory_ratio']:.1f}x less, "
                         f"ranks equal {row['ranks_equal']:.4%}")
            print(line, flush=True)
    fb = [r for r in results if r["dataset"] == "fb15k237"]
    summary = {
        "bench": "ranking",
        "repeats": args.repeats,
        "chunk_mb": args.chunk_mb,
        "results": results,
        "min_fraction_of_matmul": min(r["kgscale_fraction_of_matmul"] for r in results),
        "min_cpu_fraction_of_matmul": min(r["kgscale_cpu_fraction_of_matmul"] for r in results),
        "goal_half_of_matmul": all(r["kgscale_fraction_of_matmul"] >= 0.5 for r in results),
        "fb15k237_max_peak_mib": max((r["kgscale_peak_mib"] for r in fb), default=None),
        "goal_fb15k237_under_2gib": all(r["kgscale_peak_mib"] < 2048 for r in fb) if fb else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
