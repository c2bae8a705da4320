"""Path mining: kgscale's search against networkx, on the same pairs, in one run.

Pairs are the (head, tail) endpoints of FB15k-237 test triples; the graph is
the training graph (the test triple itself is not in it). Both sides
enumerate every simple path of at most 3 hops, walking edges both ways:
networkx with ``all_simple_edge_paths(MultiGraph, h, t, cutoff=3)``, kgscale
with ``find_paths(max_paths=0, fanout=0)`` (no caps). The path sets are
compared pair by pair, then each side's throughput on one core is reported
(kgscale's search is single-threaded per worker), then the kgscale search's
throughput with its default caps, then the whole Ray Data stage (search,
verbalised Arrow output) with 1 and 2 workers for scaling.

    PYTHONPATH=$PWD python bench/path_mining.py --snapshot /tmp/snap_fb15k237

Without ``--snapshot`` the FB15k-237 copy in ../shared/datasets is ingested
into a temporary directory first. Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kgscale.kg.graph import CSRGraph  # noqa: E402
from kgscale.kg.snapshot import Snapshot  # noqa: E402
from kgscale.synth.paths import SearchConfig, SearchIndex, find_paths  # noqa: E402


def load_snapshot(args) -> Snapshot:
    if args.snapshot:
        return Snapshot(args.snapshot)
    from kgscale.ingest import IngestConfig, run_ingest
    from kgscale.ray_session import RayConfig

    out = Path(tempfile.mkdtemp()) / "fb15k237"
    src = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fb15k237"
    run_ingest(IngestConfig(source=str(src), out=out), RayConfig(progress_bars=False))
    return Snapshot(out)


def test_pairs(snap: Snapshot, n: int, seed: int) -> list[tuple[int, int]]:
    t = snap.triples("test")
    pairs = np.unique(np.stack([t["head"].to_numpy(), t["tail"].to_numpy()], 1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    np.random.default_rng(seed).shuffle(pairs)
    return [(int(a), int(b)) for a, b in pairs[:n]]


def edge_path_sets(graph: CSRGraph, index: SearchIndex, pb, nq: int) -> list[set]:
    nodes = pb.nodes(graph, index)
    off = pb.per_question(nq)
    out = []
    for q in range(nq):
        out.append({tuple((int(nodes[p, i]), int(nodes[p, i + 1]), int(graph.triple[pb.edges[p, i]]))
                          for i in range(pb.hops[p])) for p in range(off[q], off[q + 1])})
    return out


def run_networkx(snap: Snapshot, pairs, hops: int, budget_s: float):
    import networkx as nx

    tr = snap.triples("train")
    t0 = time.perf_counter()
    g = nx.MultiGraph()
    g.add_nodes_from(range(snap.num_entities))
    g.add_edges_from((int(h), int(t), i) for i, (h, t) in enumerate(zip(tr["head"].to_numpy(), tr["tail"].to_numpy())))
    build_s = time.perf_counter() - t0
    sets, seconds = [], 0.0
    for a, b in pairs:
        t0 = time.perf_counter()
        found = {tuple(p) for p in nx.all_simple_edge_paths(g, a, b, cutoff=hops)}
        seconds += time.perf_counter() - t0
        sets.append(found)
        if seconds > budget_s:
            break
    return sets, seconds, build_s


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


class TimedMiner:
    """PathMiner plus the CPU and wall seconds each batch took inside its actor."""

    def __init__(self, shared_ref, search):
        from kgscale.synth.mining import PathMiner

        self.miner = PathMiner(shared_ref, search)

    def __call__(self, batch):
        import pyarrow as pa

        c0, w0, t0 = time.process_time(), time.perf_counter(), time.time()
        out = self.miner(batch)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        return pa.table({"n": [out.num_rows], "paths": [int(sum(out["num_paths"].to_pylist()))], "cpu_s": [cpu],
                         "wall_s": [wall], "start": [t0], "end": [time.time()]})


def ray_scaling(snap: Snapshot, pairs, cfg: SearchConfig, workers: list[int], batch: int, repeats: int) -> dict:
    """The mining stage over Ray Data with w actors: wall-clock throughput, and
    the CPU seconds spent inside the actors (flat CPU per pair as w grows means
    the workers duplicate nothing and wait on nothing: wall time then scales
    with the cores a machine gives them)."""
    import pyarrow as pa
    import ray

    from kgscale.ray_session import RayConfig, ensure_ray
    from kgscale.synth.shared_graph import build_shared_graph, put_shared_graph

    ensure_ray(RayConfig(progress_bars=False, num_cpus=max(workers)))
    ref = put_shared_graph(build_shared_graph(snap, ("train",), seed=cfg.seed))
    table = pa.table({
        "question_id": [str(i) for i in range(len(pairs))],
        "source_entities": pa.array([[a] for a, _ in pairs], pa.list_(pa.int32())),
        "target_entities": pa.array([[b] for _, b in pairs], pa.list_(pa.int32())),
    })
    blocks = [table.slice(i, batch) for i in range(0, table.num_rows, batch)]
    out = {}
    for w in workers:
        walls, cpus, spans = [], [], []
        for _ in range(repeats):
            ds = ray.data.from_arrow(blocks).map_batches(
                TimedMiner, fn_constructor_kwargs={"shared_ref": [ref], "search": cfg.model_dump()}, batch_size=batch,
                batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=w))
            t0 = time.perf_counter()
            stats = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
            walls.append(time.perf_counter() - t0)
            assert sum(stats["n"].to_pylist()) == len(pairs)
            cpus.append(sum(stats["cpu_s"].to_pylist()))
            # from the first batch's start to the last batch's end, in any actor:
            # the stage's throughput once its actors are up (their start-up, a
            # fixed cost per stage, is the difference to the wall time)
            spans.append(max(stats["end"].to_pylist()) - min(stats["start"].to_pylist()))
        wall, cpu, span = statistics.median(walls), statistics.median(cpus), statistics.median(spans)
        out[w] = {"seconds": round(wall, 2), "pairs_per_s": round(len(pairs) / wall, 1),
                  "busy_seconds": round(span, 2), "pairs_per_s_busy": round(len(pairs) / span, 1),
                  "actor_cpu_s": round(cpu, 2), "pairs_per_actor_cpu_s": round(len(pairs) / cpu, 1)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", help="FB15k-237 snapshot directory (default: ingest ../shared/datasets/fb15k237)")
    ap.add_argument("--hops", type=int, default=3)
    ap.add_argument("--nx-pairs", type=int, default=40, help="pairs for networkx (it is slow)")
    ap.add_argument("--only-scaling", action="store_true", help="only the Ray Data scaling part")
    ap.add_argument("--nx-budget-s", type=float, default=90.0, help="stop networkx after this many seconds")
    ap.add_argument("--pairs", type=int, default=2000, help="pairs for kgscale's throughput")
    ap.add_argument("--scale-pairs", type=int, default=20000, help="pairs for the Ray scaling run (0: skip)")
    ap.add_argument("--scale-config", choices=("capped", "exact"), default="capped",
                    help="search config of the Ray scaling run (capped: the stage's defaults)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    snap = load_snapshot(args)
    t0 = time.perf_counter()
    graph = CSRGraph.from_snapshot(snap, ("train",))
    index = SearchIndex.build(graph, seed=args.seed)
    csr_build_s = time.perf_counter() - t0
    pairs = test_pairs(snap, max(args.pairs, args.nx_pairs, args.scale_pairs), args.seed)
    exact = SearchConfig(max_hops=args.hops, max_paths=0, fanout=0, seed=args.seed)
    capped = SearchConfig(max_hops=args.hops, seed=args.seed)

    def mine(ps, cfg):
        return find_paths(graph, index, [np.array([a]) for a, _ in ps], [np.array([b]) for _, b in ps], cfg)

    mine(pairs[:2], exact)  # compile (or load numba's cache) outside the timings
    if args.only_scaling:
        cfg = exact if args.scale_config == "exact" else capped
        by_w = ray_scaling(snap, pairs[: args.scale_pairs], cfg, [int(w) for w in args.workers.split(",")], 256, args.repeats)
        for w, v in by_w.items():
            print(f"{args.scale_config}, {args.scale_pairs} pairs, {w} worker(s): {v}")
        print(json.dumps({"bench": "path_mining_scaling", "config": args.scale_config, "by_workers": by_w}))
        return 0

    # 1. networkx and kgscale on the same pairs, path sets compared
    nx_sets, nx_s, nx_build_s = run_networkx(snap, pairs[: args.nx_pairs], args.hops, args.nx_budget_s)
    same_pairs = pairs[: len(nx_sets)]
    kg_same_s, pb = timed(lambda: mine(same_pairs, exact), args.repeats)
    kg_sets = edge_path_sets(graph, index, pb, len(same_pairs))
    mismatched = sum(a != b for a, b in zip(kg_sets, nx_sets))
    nx_paths = sum(len(s) for s in nx_sets)

    # 2. kgscale alone on more pairs: exact, and the stage's default caps
    big = pairs[: args.pairs]
    kg_exact_s, pb_exact = timed(lambda: mine(big, exact), args.repeats)
    kg_capped_s, pb_capped = timed(lambda: mine(big, capped), args.repeats)

    res = {
        "graph": {"entities": graph.num_entities, "edges": graph.num_edges, "csr_build_s": round(csr_build_s, 2),
                  "networkx_build_s": round(nx_build_s, 2)},
        "same_pairs": {
            "pairs": len(same_pairs), "paths": nx_paths, "path_sets_identical": mismatched == 0,
            "mismatched_pairs": mismatched,
            "networkx": {"seconds": round(nx_s, 3), "pairs_per_s": round(len(same_pairs) / nx_s, 2),
                         "paths_per_s": round(nx_paths / nx_s, 1)},
            "kgscale": {"seconds": round(kg_same_s, 4), "pairs_per_s": round(len(same_pairs) / kg_same_s, 1),
                        "paths_per_s": round(nx_paths / kg_same_s, 1)},
            "speedup_per_core": round(nx_s / kg_same_s, 1),
        },
        "kgscale_exact": {"pairs": len(big), "paths": int(len(pb_exact.hops)), "seconds": round(kg_exact_s, 3),
                          "pairs_per_s": round(len(big) / kg_exact_s, 1),
                          "paths_per_s": round(len(pb_exact.hops) / kg_exact_s, 1)},
        "kgscale_capped": {"config": capped.model_dump(), "pairs": len(big), "paths": int(len(pb_capped.hops)),
                           "seconds": round(kg_capped_s, 3), "pairs_per_s": round(len(big) / kg_capped_s, 1),
                           "pairs_with_path": int((np.diff(pb_capped.per_question(len(big))) > 0).sum())},
    }
    res["kgscale_exact"]["pairs_per_s_vs_networkx"] = round(
        res["kgscale_exact"]["pairs_per_s"] / res["same_pairs"]["networkx"]["pairs_per_s"], 1)
    res["kgscale_exact"]["paths_per_s_vs_networkx"] = round(
        res["kgscale_exact"]["paths_per_s"] / res["same_pairs"]["networkx"]["paths_per_s"], 1)

    s = res["same_pairs"]
    print(f"graph: {graph.num_entities:,} entities, {graph.num_edges:,} directed edges (FB15k-237 train, both directions)")
    print(f"same {s['pairs']} pairs, every path of <= {args.hops} hops ({s['paths']:,} paths), "
          f"path sets identical: {s['path_sets_identical']}")
    print(f"  networkx   {s['networkx']['pairs_per_s']:>10,.1f} pairs/s {s['networkx']['paths_per_s']:>12,.0f} paths/s")
    print(f"  kgscale    {s['kgscale']['pairs_per_s']:>10,.1f} pairs/s {s['kgscale']['paths_per_s']:>12,.0f} paths/s"
          f"   x{s['speedup_per_core']} per core")
    e, c = res["kgscale_exact"], res["kgscale_capped"]
    print(f"kgscale exact, {e['pairs']} pairs: {e['pairs_per_s']:,.1f} pairs/s, {e['paths_per_s']:,.0f} paths/s "
          f"(x{e['pairs_per_s_vs_networkx']} / x{e['paths_per_s_vs_networkx']} networkx's rates)")
    print(f"kgscale capped (K={capped.max_paths}, fanout={capped.fanout}): {c['pairs_per_s']:,.1f} pairs/s, "
          f"{c['pairs_with_path']}/{c['pairs']} pairs with a path")
    sys.stdout.flush()  # the core figures stand even if the Ray run below fails

    # 3. the Ray Data stage (texts and Arrow output included), 1 and 2 workers
    if args.scale_pairs:
        workers = [int(w) for w in args.workers.split(",")]
        scale_cfg = exact if args.scale_config == "exact" else capped
        scale_pairs = pairs[: args.scale_pairs]
        try:
            by_w = ray_scaling(snap, scale_pairs, scale_cfg, workers, batch=256, repeats=args.repeats)
        except Exception as exc:  # a Ray failure (an overloaded node) must not lose the figures above
            by_w = {}
            res["ray_stage_error"] = f"{type(exc).__name__}: {exc}"[:500]
        res["ray_stage"] = {"config": args.scale_config, "pairs": len(scale_pairs), "by_workers": {str(w): v for w, v in by_w.items()}}
        if len(by_w) > 1:
            w0, w1 = min(by_w), max(by_w)
            res["ray_stage"]["wall_speedup"] = round(by_w[w0]["seconds"] / by_w[w1]["seconds"], 2)
            res["ray_stage"]["busy_speedup"] = round(by_w[w0]["busy_seconds"] / by_w[w1]["busy_seconds"], 2)
            res["ray_stage"]["ideal_speedup"] = w1 / w0
            # CPU efficiency: pairs per actor CPU-second at w1 workers relative to w0
            res["ray_stage"]["cpu_efficiency"] = round(
                by_w[w1]["pairs_per_actor_cpu_s"] / by_w[w0]["pairs_per_actor_cpu_s"], 2)

    if res.get("ray_stage", {}).get("by_workers"):
        r = res["ray_stage"]
        for w, v in r["by_workers"].items():
            print(f"Ray Data stage ({r['config']}, verbalised Arrow output), {r['pairs']} pairs, {w} worker(s): "
                  f"{v['pairs_per_s']:,.1f} pairs/s wall, {v['pairs_per_s_busy']:,.1f} pairs/s once the actors are up, "
                  f"{v['pairs_per_actor_cpu_s']:,.1f} pairs per actor CPU-second")
        if "wall_speedup" in r:
            print(f"  wall speedup {r['wall_speedup']} (once up {r['busy_speedup']}) of ideal {r['ideal_speedup']}; "
                  f"CPU efficiency {r['cpu_efficiency']} "
                  f"(1.0: the extra worker costs no CPU per pair)")
    print(json.dumps({"bench": "path_mining", **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
