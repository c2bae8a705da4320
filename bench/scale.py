"""How kgscale's cost grows with the graph: generate, ingest, mine paths and
rank at a chosen size, on a synthetic KG (``kgscale synth-kg``) with the
shape of a real one.

At ``--triples N`` (default 1M; entities N / 4.5 as in Wikidata5M):

1. **synth**: the generator writes the benchmark directory and plain
   N-Triples under ``--work`` (reused when the config is the same);
2. **ingest**: ``kgscale ingest`` of the N-Triples (``nt/``, names and
   descriptions as ``rdfs:label`` / ``rdfs:comment``): wall seconds and cost
   per triple with Ray already started (its start is ``ray_start_s``; before
   2026-12-07 the seconds included it), the manifest's seconds per phase
   (``timings_s``, columns of the table), and peak memory: the driver's peak RSS (VmHWM) and the peak of
   the RSS summed over the driver and every process it started (Ray's
   workers and daemons; shared pages such as the object store count once per
   process that maps them, so this is an upper bound), sampled every 0.2 s;
3. **paths**: the CSR graph of train built once and put in the object store
   (its size), then path mining with the stage's default caps
   (``SearchConfig()``) for ``--pairs`` (head, tail) pairs of test triples:
   pairs/s of the search on one core, and of the Ray Data stage (texts and
   Arrow output included) with one actor that maps the shared graph;
4. **rank**: for each ``--rank-entities`` M, exact filtered ranking of
   ``--queries`` random unit queries against M random unit embeddings at
   ``--dim`` (256), sharded over ``--shards`` Ray actors that each generate
   only their own rows (:class:`kgscale.eval.sharded_ranking.ShardedRanker`):
   queries/s, peak RSS per actor, and the fraction of GEMM throughput: the
   ranking's 2 n M d flops per second over the rate of a plain ``torch.mm``
   of the same [rows, d] x [d, columns] shape (columns capped at 2^18),
   timed in this process right after, on one actor's threads, times the
   cores the actors had between them (their CPU affinity: under
   ``taskset -c 1`` both actors share one core).

Each step runs in its own process (its own Ray), so its memory is its own.
``--rss-limit-gb`` stops a step one of whose processes grows past it (recorded,
not hidden), and so does one that leaves the machine under 3 GiB available.
``--read-scaling`` instead measures the ingest read (read tasks over the
N-Triples run as Ray tasks, as ``bench/ntriples_ingest.py`` does) on a Ray
of 1, then 2 CPUs, beside the same tasks through Ray Data's
``read_datasource`` and in as many plain processes (the parse's own scaling,
the limit for the Ray read): run it without CPU pinning. Prints a table and one JSON
line; ``--append FILE`` adds the JSON line to FILE, and ``--plot FILE --png
OUT`` draws cost against size from such a file.

    nice -n 19 taskset -c 1 python bench/scale.py --triples 1000000 --work /work/scale18 \\
        --rank-entities 1000000 --append /work/scale18/scale.jsonl
    nice -n 19 python bench/scale.py --triples 5000000 --work /work/scale18 --read-scaling
    python bench/scale.py --plot /work/scale18/scale.jsonl --png docs/scale.png
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


# ---- measuring ------------------------------------------------------------

class TreeRSS:
    """Peak RSS of this process plus every descendant (summed), and of the
    largest one, sampled in a thread. The step is ended when one process
    passes ``limit_bytes`` or the machine's available memory falls under
    ``min_available_bytes`` (the machine is shared)."""

    def __init__(self, interval: float = 0.2, limit_bytes: int | None = None,
                 min_available_bytes: int = 3 * GIB) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval, self.limit, self.min_available = interval, limit_bytes, min_available_bytes
        self.peak_tree = self.peak_process = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        sizes = []
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                sizes.append(p.memory_info().rss)
            except psutil.Error:
                pass
        self.peak_tree = max(self.peak_tree, sum(sizes))
        self.peak_process = max([self.peak_process, *sizes])

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            self._sample()
            available = psutil.virtual_memory().available
            why = None
            if self.limit and self.peak_process > self.limit:
                why = f"a process reached {self.peak_process / GIB:.1f} GiB RSS (limit {self.limit / GIB:.1f})"
            elif available < self.min_available:
                why = f"the machine had {available / GIB:.1f} GiB available (under {self.min_available / GIB:.1f})"
            if why:
                print(json.dumps({"stopped": why, "tree_peak_rss_bytes": self.peak_tree,
                                  "process_peak_rss_bytes": self.peak_process}), flush=True)
                os._exit(3)
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeRSS":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self._sample()


def driver_peak_rss() -> int:
    from kgscale.eval.sharded_ranking import peak_rss_bytes

    return peak_rss_bytes()


def _ray(num_cpus: int) -> None:
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# ---- steps (each in its own process) -----------------------------------------

def step_synth(args) -> dict:
    from kgscale.kg.synthetic import SyntheticKGConfig, write_synthetic_kg

    cfg = SyntheticKGConfig(triples=args.triples, seed=args.seed)
    out = kg_dir(args)
    marker = out / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text())["config"]["triples"] == args.triples \
            and json.loads(marker.read_text())["config"]["seed"] == args.seed:
        return {"reused": True, **json.loads(marker.read_text())["counts"]}
    t0 = time.perf_counter()
    info = write_synthetic_kg(cfg, out, formats=("benchmark", "nt"))
    size = sum(f.stat().st_size for f in (out / "nt").iterdir())
    return {"reused": False, "seconds": round(time.perf_counter() - t0, 1), "nt_bytes": size,
            "peak_rss_bytes": driver_peak_rss(), **info["counts"]}


def step_ingest(args) -> dict:
    import ray

    from kgscale.ingest import IngestConfig, run_ingest
    from kgscale.kg.rdf.config import RdfConfig, RdfSplits
    from kgscale.ray_session import RayConfig, ensure_ray

    rdf = RdfConfig(splits=RdfSplits(files={"valid": ["valid.nt*"], "test": ["test.nt*"]}))
    cfg = IngestConfig(source=str(kg_dir(args) / "nt"), out=snapshot_dir(args), overwrite=True, rdf=rdf,
                       read_task_mb=args.read_task_mb)
    ray_cfg = RayConfig(num_cpus=args.ray_cpus, progress_bars=False, object_store_gb=args.object_store_gb)
    # Ray is started before the timer (run_ingest finds it running): its
    # start, seconds that do not grow with the graph, is reported apart
    t0 = time.perf_counter()
    ensure_ray(ray_cfg)
    ray_start = time.perf_counter() - t0
    limit = int(args.rss_limit_gb * GIB) if args.rss_limit_gb else None
    with TreeRSS(limit_bytes=limit) as rss:
        t0 = time.perf_counter()
        m = run_ingest(cfg, ray_cfg)
        wall = time.perf_counter() - t0
    n = m["counts"]["triples_total"]
    resources = ray.cluster_resources() if ray.is_initialized() else {}
    return {"seconds": round(wall, 1), "ray_start_s": round(ray_start, 1), "ray_started_before_timer": True,
            "ray_cpus": resources.get("CPU"), "object_store_bytes": int(resources.get("object_store_memory", 0)),
            "triples": n, "entities": m["counts"]["entities"], "read_task_mb": args.read_task_mb,
            "us_per_triple": round(wall / n * 1e6, 2), "driver_peak_rss_bytes": driver_peak_rss(),
            "tree_peak_rss_bytes": rss.peak_tree, "process_peak_rss_bytes": rss.peak_process,
            "driver_rss_bytes_per_triple": round(driver_peak_rss() / n, 1),
            "timings_s": {k: round(v, 1) for k, v in m["timings_s"].items()}, "rejected": m["rejected"]["total"]}


def step_paths(args) -> dict:
    import pyarrow as pa
    import ray

    from kgscale.kg.snapshot import Snapshot
    from kgscale.synth.mining import PathMiner
    from kgscale.synth.paths import SearchConfig, find_paths
    from kgscale.synth.shared_graph import build_shared_graph, put_shared_graph

    _threads(1)
    snap = Snapshot(snapshot_dir(args))
    t0 = time.perf_counter()
    shared = build_shared_graph(snap, ("train",), seed=args.seed)
    build_s = time.perf_counter() - t0
    t = snap.triples("test")
    pairs = np.unique(np.stack([t["head"].to_numpy(), t["tail"].to_numpy()], 1), axis=0)
    np.random.default_rng(args.seed).shuffle(pairs)
    pairs = pairs[: args.pairs]
    cfg = SearchConfig()
    src, tgt = [np.array([a]) for a, _ in pairs], [np.array([b]) for _, b in pairs]
    find_paths(shared.graph, shared.index, src[:2], tgt[:2], cfg)  # compile / load numba's cache
    c0, t0 = time.process_time(), time.perf_counter()
    pb = find_paths(shared.graph, shared.index, src, tgt, cfg)
    search_s, search_cpu = time.perf_counter() - t0, time.process_time() - c0
    found = int((np.diff(pb.per_question(len(pairs))) > 0).sum())

    _ray(1)
    t0 = time.perf_counter()
    ref = put_shared_graph(shared)
    put_s = time.perf_counter() - t0
    table = pa.table({"question_id": [str(i) for i in range(len(pairs))],
                      "source_entities": pa.array([[int(a)] for a, _ in pairs], pa.list_(pa.int32())),
                      "target_entities": pa.array([[int(b)] for _, b in pairs], pa.list_(pa.int32()))})
    ds = ray.data.from_arrow([table.slice(i, 64) for i in range(0, table.num_rows, 64)]).map_batches(
        PathMiner, fn_constructor_kwargs={"shared_ref": [ref], "search": cfg.model_dump()}, batch_size=64,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1))
    t0 = time.perf_counter()
    rows = sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
    stage_s = time.perf_counter() - t0
    assert rows == len(pairs)
    return {"entities": shared.graph.num_entities, "edges": shared.graph.num_edges, "csr_build_s": round(build_s, 1),
            "csr_bytes": shared.graph.nbytes(), "shared_graph_bytes": shared.nbytes(), "put_s": round(put_s, 2),
            "pairs": len(pairs), "pairs_with_path": found, "search_pairs_per_cpu_s": round(len(pairs) / search_cpu, 1),
            "search_pairs_per_s": round(len(pairs) / search_s, 1),
            "stage_1_actor_pairs_per_s": round(len(pairs) / stage_s, 1), "config": cfg.model_dump(),
            "driver_peak_rss_bytes": driver_peak_rss()}


def unit_rows(seed: int, dim: int):
    """A shard loader: random unit rows, generated in blocks, float32 only
    (a float64 draw of a 2.5M-row shard would be 5 GB); row i is the same
    whatever the sharding (blocks are seeded by their first row)."""
    block = 1 << 16

    def rows(lo: int, hi: int) -> np.ndarray:
        out = np.empty((hi - lo, dim), dtype=np.float32)
        for b0 in range(lo - lo % block, hi, block):
            x = np.random.default_rng([seed, b0]).standard_normal((block, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)  # per block: no shard-sized temporary
            a, b = max(lo, b0), min(hi, b0 + block)
            out[a - lo: b - lo] = x[a - b0: b - b0]
        return out

    return rows


def gemm_flops_per_s(rows: int, dim: int, columns: int, threads: int, repeats: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    q = torch.randn(rows, dim)
    e = torch.randn(columns, dim)
    out = torch.empty(rows, columns)
    torch.mm(q, e.T, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(q, e.T, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * rows * dim * columns / statistics.median(times)


def step_rank(args, num: int) -> dict:
    from kgscale.eval.ranking import QueryFilters
    from kgscale.eval.sharded_ranking import ShardedRanker

    _threads(1)
    rng = np.random.default_rng(args.seed)
    q = unit_rows(args.seed + 1, args.dim)(0, args.queries)
    targets = rng.integers(0, num, size=args.queries)
    # 20 other known answers a query (a hub relation has far more, most have fewer)
    filters = QueryFilters.from_lists([rng.integers(0, num, size=20) for _ in range(args.queries)])
    _ray(args.shards * args.actor_cpus)
    with TreeRSS() as rss:
        t0 = time.perf_counter()
        ranker = ShardedRanker(loader=unit_rows(args.seed, args.dim), num_candidates=num, num_shards=args.shards,
                               chunk_mb=args.chunk_mb, actor_options={"num_cpus": args.actor_cpus})
        ranker.ranks(q[:2], targets[:2])  # the shards are loaded (and numba compiled) before timing
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranks = ranker.ranks(q, targets, filters)
        rank_s = time.perf_counter() - t0
        mem = ranker.memory()
        rows = ranker.rows_per_chunk
        ranker.close()
    # the actors' GEMM, one actor's threads, times the cores they had between
    # them (under `taskset -c 1` two actors share one core)
    threads = max(1, int(args.actor_cpus))
    cores = min(args.shards * threads, len(os.sched_getaffinity(0)))
    gemm = cores * gemm_flops_per_s(min(rows, args.queries), args.dim, min(num // args.shards, 1 << 18), threads)
    flops = 2 * args.queries * num * args.dim / rank_s
    return {"entities": num, "dim": args.dim, "queries": args.queries, "shards": args.shards,
            "actor_cpus": args.actor_cpus, "cores": cores, "rows_per_chunk": rows, "load_s": round(load_s, 1),
            "seconds": round(rank_s, 2), "queries_per_s": round(args.queries / rank_s, 2),
            "gflops": round(flops / 1e9, 1), "gemm_gflops": round(gemm / 1e9, 1),
            "fraction_of_gemm": round(flops / gemm, 3), "median_rank": float(np.median(ranks)),
            "actor_peak_rss_bytes": [m["peak_rss_bytes"] for m in mem],
            "actor_shard_bytes": [m["shard_bytes"] for m in mem], "tree_peak_rss_bytes": rss.peak_tree}


def _read_in_process(task_blob: bytes) -> int:
    """One read task in a plain process: its rows parsed and cut as the
    ingest's read task cuts them, then dropped here, not sent back."""
    import cloudpickle
    import pyarrow as pa

    from kgscale.kg.assemble import split_block

    blocks = list(cloudpickle.loads(task_blob)())
    if blocks:
        split_block(pa.concat_tables(blocks, promote_options="permissive"), with_triple_keys=True)
    return sum(block.num_rows for block in blocks)


def step_read_scaling(args) -> dict:
    """The ingest read of the N-Triples on a Ray of 1, then 2 CPUs (medians):
    ``read_blocks`` as the ingest calls it, each task's rows parsed, cut by
    ``split_block`` and stored in the object store. Beside it, run
    alternately, the same read tasks through Ray Data (``read_datasource(...)
    .materialize()``, one block a task, not cut), and in a pool of as many
    plain processes (``ProcessPoolExecutor``, spawned) that parse and cut the
    same rows and drop them: the parse's own scaling on this machine, the
    limit that the Ray read can reach."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import cloudpickle
    import ray

    from kgscale.kg.assemble import split_block
    from kgscale.kg.rdf.config import RdfConfig
    from kgscale.kg.sources.ray_read import read_blocks
    from kgscale.kg.sources.rdf_files import RdfFileSource

    files = str(kg_dir(args) / "nt" / "train.nt")
    split = functools.partial(split_block, with_triple_keys=True)  # as kgscale.ingest reads RDF files
    ways = {  # each returns what it read, held until its time is taken
        "kgscale": lambda src: read_blocks(src.datasource(), split=split, parts=3)[0],
        "ray_data": lambda src: ray.data.read_datasource(
            src.datasource(), override_num_blocks=len(src.datasource().get_read_tasks(-1))).materialize(),
    }
    rows = {"kgscale": lambda parts: sum(t.num_rows for t in ray.get([p[0] for p in parts]))  # triple rows,
            + sum(t.num_rows for texts in ray.get([p[1] for p in parts]) for t in texts.values()),  # + text rows
            "ray_data": lambda ds: ds.count(),
            "processes": lambda n: n}
    out = {name: {} for name in (*ways, "processes")}
    for w in (1, 2):
        _ray(w)
        src = RdfFileSource(files, RdfConfig(), target_bytes=int(args.read_task_mb * (1 << 20)))
        pool = ProcessPoolExecutor(max_workers=w, mp_context=multiprocessing.get_context("spawn"))
        blobs = [cloudpickle.dumps(t) for t in src.datasource().get_read_tasks(-1)]
        ways["processes"] = lambda src, pool=pool, blobs=blobs: sum(pool.map(_read_in_process, blobs))
        times = {name: [] for name in ways}
        counts = {name: rows[name](read(src)) for name, read in ways.items()}  # also warms the workers
        for _ in range(args.repeats):
            for name, read in ways.items():
                t0 = time.perf_counter()
                got = read(src)
                times[name].append(time.perf_counter() - t0)
                del got
        for name in ways:
            out[name][w] = {"seconds": round(statistics.median(times[name]), 2), "rows": counts[name],
                            "read_tasks": len(src.datasource().get_read_tasks(-1)),
                            "all_s": [round(t, 2) for t in times[name]]}
        pool.shutdown()
        ray.shutdown()

    def speedup(name):
        return round(out[name][1]["seconds"] / out[name][2]["seconds"], 2)

    return {"file_bytes": os.path.getsize(files), "by_cpus": out["kgscale"], "ray_data_by_cpus": out["ray_data"],
            "processes_by_cpus": out["processes"],
            "speedup_2_vs_1": speedup("kgscale"), "ray_data_speedup_2_vs_1": speedup("ray_data"),
            "processes_speedup_2_vs_1": speedup("processes"),
            # the Ray read's 2-CPU time over the plain processes': 1.0 is the machine's limit for this parse
            "kgscale_2cpu_vs_processes": round(out["kgscale"][2]["seconds"] / out["processes"][2]["seconds"], 2),
            "load_average_1min": round(os.getloadavg()[0], 2)}


# ---- driving ---------------------------------------------------------------------

def kg_dir(args) -> Path:
    return Path(args.work) / f"kg_{args.triples}_s{args.seed}"


def snapshot_dir(args) -> Path:
    return Path(args.work) / f"snap_{args.triples}_s{args.seed}"


def run_step(argv: list[str], name: str, extra: list[str]) -> dict:
    """This script with ``--step NAME`` in a child process; its last stdout line is its JSON."""
    cmd = [sys.executable, __file__, *argv, "--step", name, *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {p.returncode}", "stopped": json.loads(lines[-1]).get("stopped") if lines else None,
                "tail": tail, "wall_s": round(time.perf_counter() - t0, 1)}
    return json.loads(lines[-1])


def gib(b) -> str:
    return f"{b / GIB:.2f}"


def phase_columns(ingest: dict, indent: str = " " * 12) -> list[str]:
    """The ingest's phases (the manifest's ``timings_s``) as columns, in
    seconds: Ray's start (before the timer, not in ``total``), each phase,
    ``other`` (``total`` less the phases: time between them) and ``total``."""
    t = dict(ingest.get("timings_s") or {})
    if not t:
        return []
    total = t.pop("total", None)
    cols = {"ray start": ingest.get("ray_start_s"), **t}
    if total is not None:
        cols["other"] = round(total - sum(t.values()), 1)
        cols["total"] = total
    width = {k: max(len(k), 6) for k in cols}
    head = "  ".join(f"{k:>{width[k]}}" for k in cols)
    row = "  ".join(f"{'-' if v is None else f'{v:.1f}':>{width[k]}}" for k, v in cols.items())
    return [f"{indent}{head}  (s)", f"{indent}{row}"]


def table(res: dict) -> str:
    out = [f"synthetic KG: {res['triples']:,} triples (seed {res['seed']})"]
    s = res["synth"]
    out.append(f"  synth     {'reused' if s.get('reused') else str(s.get('seconds')) + ' s'}; "
               f"{s.get('entities', 0):,} entities, {s.get('relations', 0)} relations")
    i = res["ingest"]
    if i.get("error") == "skipped":
        out.append("  ingest    skipped")
    elif "error" in i:
        out.append(f"  ingest    FAILED: {i.get('stopped') or i['error']}")
    else:
        out.append(f"  ingest    {i['seconds']:>8} s  {i['us_per_triple']:>7} us/triple  driver peak RSS "
                   f"{gib(i['driver_peak_rss_bytes'])} GiB ({i['driver_rss_bytes_per_triple']:.0f} B/triple), "
                   f"process tree peak {gib(i['tree_peak_rss_bytes'])} GiB")
        if i.get("ray_cpus"):
            out.append(f"            Ray: {i['ray_cpus']:g} CPUs, object store {gib(i['object_store_bytes'])} GiB")
        out.extend(phase_columns(i))
    p = res.get("paths", {})
    if p and "error" not in p:
        out.append(f"  paths     {p['search_pairs_per_cpu_s']:>8} pairs/s per core (search), "
                   f"{p['stage_1_actor_pairs_per_s']} pairs/s (Ray Data stage, 1 actor); CSR "
                   f"{gib(p['csr_bytes'])} GiB, shared graph in the object store {gib(p['shared_graph_bytes'])} GiB; "
                   f"{p['pairs_with_path']}/{p['pairs']} pairs with a path")
    elif p:
        out.append(f"  paths     FAILED: {p.get('stopped') or p['error']}")
    for r in res.get("rank", []):
        if "error" in r:
            out.append(f"  rank      FAILED: {r.get('stopped') or r['error']}")
            continue
        out.append(f"  rank      {r['entities']:>10,} entities, d={r['dim']}, {r['shards']} shards: "
                   f"{r['queries_per_s']} queries/s, {r['gflops']} GFLOP/s = {r['fraction_of_gemm']:.0%} of GEMM "
                   f"({r['gemm_gflops']} GFLOP/s), peak RSS per actor "
                   f"{', '.join(gib(b) for b in r['actor_peak_rss_bytes'])} GiB")
    return "\n".join(out)


def plot(jsonl: Path, png: Path, since: str = "", ingest_since: str = "") -> None:
    """Cost against size: every run of the file as a point (the spread is the
    noise of a shared machine), a line through the median of each size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = [json.loads(l) for l in jsonl.read_text().splitlines() if l.strip().startswith("{")]
    # runs from `since` on (ISO time; the code measured changes between runs)
    rows = [r for r in rows if r.get("bench") == "scale" and r["triples"] >= 1_000_000 and r.get("when", "") >= since]
    ingest = [(r["triples"], r["ingest"]) for r in rows
              if "error" not in r.get("ingest", {"error": 1}) and r.get("when", "") >= ingest_since]
    paths = [(r["triples"], r["paths"]) for r in rows if "error" not in r.get("paths", {"error": 1})]
    rank = [(x["entities"], x) for r in rows for x in r.get("rank", []) if "error" not in x]
    panels = [
        ("ingest time per triple", "microseconds per triple", "triples",
         [("ingest wall", [(n, i["us_per_triple"]) for n, i in ingest])]),
        ("ingest peak memory per triple", "bytes per triple", "triples",
         [("driver peak RSS", [(n, i["driver_peak_rss_bytes"] / n) for n, i in ingest]),
          ("process-tree peak RSS (upper bound)", [(n, i["tree_peak_rss_bytes"] / n) for n, i in ingest])]),
        ("path mining, default caps", "pairs/s per core", "triples",
         [("search", [(n, p["search_pairs_per_cpu_s"]) for n, p in paths])]),
        ("sharded exact ranking, d=256", "candidate scores/s (millions)", "entities",
         [("queries/s x entities", [(n, x["queries_per_s"] * n / 1e6) for n, x in rank])]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 4))
    for ax, (title, ylabel, xlabel, series) in zip(axes, panels):
        for k, (label, pts) in enumerate(series):
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.scatter(np.array(xs) / 1e6, ys, color=f"C{k}", alpha=0.6)
            sizes = sorted(set(xs))
            med = [statistics.median(y for x, y in pts if x == n) for n in sizes]
            ax.plot(np.array(sizes) / 1e6, med, "-", color=f"C{k}", label=label)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if round(v, 6) in (2, 5) else ""))
        ax.set_xlabel(f"{xlabel} (millions)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("kgscale on synthetic KGs (bench/scale.py) on a shared 2-core machine (each step's cores: "
                 "docs/scale.md); points are runs, lines their medians")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triples", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/kgscale-scale", help="where the KG and snapshot go (not the repo)")
    ap.add_argument("--read-task-mb", type=float, default=8.0)
    ap.add_argument("--ray-cpus", type=int, default=1, help="Ray CPUs of the ingest")
    ap.add_argument("--object-store-gb", type=float, default=None,
                    help="object store of the ingest's Ray, GiB (default: Ray's 30%% of memory)")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--rank-entities", default="1000000", help="comma-separated entity counts ('' skips ranking)")
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--actor-cpus", type=float, default=1)
    ap.add_argument("--chunk-mb", type=float, default=256.0, help="score buffer per actor")
    ap.add_argument("--rss-limit-gb", type=float, default=9.5, help="stop a step one of whose processes passes this")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: ingest, paths, rank")
    ap.add_argument("--read-scaling", action="store_true", help="only the 1- vs 2-CPU ingest read")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--append", help="append the JSON line to this file")
    ap.add_argument("--plot", help="draw a PNG from this JSONL file (needs --png) and exit")
    ap.add_argument("--png")
    ap.add_argument("--since", default="", help="plot only runs from this ISO time on (e.g. 2026-12-01T19:00)")
    ap.add_argument("--ingest-since", default="", help="... and their ingest figures only from this time on")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--num", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.plot:
        plot(Path(args.plot), Path(args.png), args.since, args.ingest_since)
        return 0
    if args.step:
        fn = {"synth": step_synth, "ingest": step_ingest, "paths": step_paths, "read_scaling": step_read_scaling,
              "rank": lambda a: step_rank(a, a.num)}[args.step]
        print(json.dumps(fn(args)), flush=True)
        return 0

    argv = [a for a in sys.argv[1:] if a not in ("--read-scaling",)]
    # the child must not append or plot
    for flag in ("--append",):
        if flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    res = {"bench": "scale", "triples": args.triples, "seed": args.seed, "synth": run_step(argv, "synth", [])}
    if args.read_scaling:
        res["read_scaling"] = run_step(argv, "read_scaling", [])
        print(json.dumps(res["read_scaling"], indent=1))
    else:
        skip = set(filter(None, args.skip.split(",")))
        res["ingest"] = run_step(argv, "ingest", []) if "ingest" not in skip else {"error": "skipped"}
        if "paths" not in skip and "error" not in res["ingest"]:
            res["paths"] = run_step(argv, "paths", [])
        if "rank" not in skip:
            res["rank"] = [run_step(argv, "rank", ["--num", n]) for n in filter(None, args.rank_entities.split(","))]
        print(table(res))
    res["load_average_1min"] = round(os.getloadavg()[0], 2)
    res["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(res)
    print(line)
    if args.append:
        with open(args.append, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
