"""Benchmark-directory ingestion: kgscale (Ray Data read tasks) against the
plain single-process loader that KG-embedding codebases ship (read each TSV
line, split, map keys to ids through dicts, write nothing but the arrays).

Both run in this one process, side by side, several times; the figures are
medians, and the ratio is the baseline's time over kgscale's. Ray starts once
before timing (a session pays that once). Usage:

    python bench/ingest_benchmark.py [DATASET_DIR] [--repeats 3] [--cpus 1 2]
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from kgscale.ingest import IngestConfig, run_ingest

ROOT = Path(__file__).resolve().parents[1]


def baseline(directory: Path) -> int:
    """What a user would otherwise write: dicts from keys to ids, lists of triples."""
    ent, rel = {}, {}
    with open(directory / "entities.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            key, name, desc = line.rstrip("\n").split("\t")
            ent.setdefault(key, len(ent))
    with open(directory / "relations.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            key, text = line.rstrip("\n").split("\t")
            rel.setdefault(key, len(rel))
    n = 0
    for split in ("train", "valid", "test"):
        rows = []
        with open(directory / f"{split}.txt", encoding="utf-8") as f:
            for line in f:
                h, r, t = line.rstrip("\n").split("\t")
                rows.append((ent[h], rel[r], ent[t]))
        arr = np.array(rows, dtype=np.int32)
        n += len(arr)
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "datasets" / "fb15k237"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    src = Path(args.dataset)
    results = {"dataset": src.name}
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n = baseline(src)
        times.append(time.perf_counter() - t0)
    results["baseline_s"] = statistics.median(times)
    results["triples"] = n

    for cpus in args.cpus:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        times = []
        for _ in range(args.repeats):
            out = Path(tempfile.mkdtemp()) / "snap"
            t0 = time.perf_counter()
            # 2 MiB tasks so that the work spreads over the workers
            run_ingest(IngestConfig(source=str(src), out=out, read_task_mb=2))
            times.append(time.perf_counter() - t0)
            shutil.rmtree(out.parent)
        ray.shutdown()
        results[f"kgscale_{cpus}cpu_s"] = statistics.median(times)
        results[f"speedup_{cpus}cpu_vs_baseline"] = results["baseline_s"] / results[f"kgscale_{cpus}cpu_s"]

    for k, v in results.items():
        print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
