"""N-Triples ingestion: kgscale against rdflib's parser, on the same file, in one run.

The file is FB15k-237 written as N-Triples (triples, names and descriptions
as literal triples: 338,323 statements, one file). Measured, each as the
median of ``--repeats`` runs:

- ``rdflib``: ``rdflib.Graph().parse(path, format="nt")`` in this process,
  one core: the parser a user would otherwise reach for;
- ``pyoxigraph``: pyoxigraph's parser, iterating the statements (reference);
- ``kgscale_1core``: kgscale's read function (parse + map to raw rows, the
  work of a read task) over the whole file in this process, one core;
- ``kgscale_ray_1`` / ``kgscale_ray_2``: ``kgscale ingest``'s read
  (:func:`kgscale.kg.sources.ray_read.read_blocks`: read tasks over
  line-aligned byte ranges, run as Ray tasks) on a Ray cluster of 1, then 2 CPUs, the
  tasks planned for that cluster (wall time until every block is in the
  object store, Ray scheduling included). This machine has 2 cores shared
  with Ray's own processes: read the scaling figure with the load average
  beside it. ``--copies N`` gives the Ray readers a file of N copies (a
  larger input, so that Ray's fixed cost per read, about 0.1-0.2 s, weighs
  less); rates are per statement either way.

Prints a table, the ratios, and a final JSON line.

    PYTHONPATH=. python bench/ntriples_ingest.py [--data ../shared/datasets/fb15k237] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    default = Path(os.environ.get("KGSCALE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets" / "fb15k237"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(default), help="benchmark directory to write as N-Triples")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rdflib-repeats", type=int, default=None, help="rdflib is slow: fewer runs (default --repeats)")
    ap.add_argument("--task-mb", type=float, default=64.0, help="largest byte range per Ray read task")
    ap.add_argument("--copies", type=int, default=1, help="the Ray readers read a file of this many copies")
    args = ap.parse_args()

    import pyarrow.compute as pc
    import pyoxigraph as ox
    import ray
    import rdflib

    from kgscale.kg.rdf.config import RdfConfig
    from kgscale.kg.rdf.export import export_benchmark
    from kgscale.kg.rdf.formats import read_line_range
    from kgscale.kg.lines import ByteRange
    from kgscale.kg.sources.ray_read import read_blocks
    from kgscale.kg.sources.rdf_files import RdfFileSource

    work = Path(tempfile.mkdtemp(prefix="kgscale-bench-nt-"))
    try:
        export_benchmark(args.data, work / "parts")
        path = work / "fb15k237.nt"
        with open(path, "wb") as out:
            for name in ("train.nt", "valid.nt", "test.nt", "text.nt"):
                out.write((work / "parts" / name).read_bytes())
        n = sum(1 for _ in open(path, "rb"))
        size_mb = path.stat().st_size / 1e6
        print(f"file: {path.name}, {n:,} statements, {size_mb:.1f} MB")
        big, n_big = path, n
        if args.copies > 1:
            big, n_big = work / "copies.nt", n * args.copies
            with open(big, "wb") as out:
                for _ in range(args.copies):
                    out.write(path.read_bytes())
            print(f"Ray readers: {big.name}, {args.copies} copies, {n_big:,} statements, {big.stat().st_size / 1e6:.1f} MB")
        cfg = RdfConfig()

        def kgscale_local():
            rows = 0
            for t in read_line_range(ByteRange(str(path), 0, -1), "train", cfg):
                rows += int(pc.sum(pc.is_in(t["kind"], value_set=__import__("pyarrow").array(["triple", "entity"]))).as_py())
            return rows

        def pyoxigraph_parse():
            return sum(1 for _ in ox.parse(path=str(path), format=ox.RdfFormat.N_TRIPLES))

        def rdflib_parse():
            g = rdflib.Graph()
            g.parse(str(path), format="nt")
            return len(g)

        results, ray_results = {}, {}
        # A worker is a CPU of the Ray cluster: Ray is started with 1, then 2
        # CPUs, and `kgscale ingest`'s own read runs on each (read tasks
        # planned for the cluster, every one submitted at once). Measured
        # first: run after rdflib's parse in this process (a graph of 338k
        # triples built and dropped), the same 2-CPU read took 2.6 s, not 2.0 s.
        read_tasks = {}
        for w in (1, 2):
            ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            source = RdfFileSource(str(big), cfg, target_bytes=int(args.task_mb * (1 << 20)))

            def ray_read():
                # blocks stay in the object store, as in `kgscale ingest`
                return read_blocks(source.datasource())[0]

            assert sum(t.num_rows for t in ray.get(ray_read())) == n_big  # also warms the workers
            t, _ = median_time(ray_read, args.repeats)
            ray_results[f"kgscale_ray_{w}"] = t
            read_tasks[w] = len(source.datasource().get_read_tasks(-1))
            ray.shutdown()

        t, rows = median_time(kgscale_local, args.repeats)
        assert rows == n, (rows, n)  # every statement became a triple or an entity text row
        results["kgscale_1core"] = t
        t, count = median_time(pyoxigraph_parse, args.repeats)
        assert count == n
        results["pyoxigraph"] = t
        t, count = median_time(rdflib_parse, args.rdflib_repeats or args.repeats)
        assert count == n
        results["rdflib"] = t

        results.update(ray_results)

        rate = {k: (n_big if k.startswith("kgscale_ray") else n) / v for k, v in results.items()}
        print(f"{'reader':16} {'median s':>9} {'statements/s':>14} {'x rdflib':>9}")
        for k, v in results.items():
            print(f"{k:16} {v:9.3f} {rate[k]:14,.0f} {rate[k] / rate['rdflib']:9.1f}")
        summary = {
            "bench": "ntriples_ingest",
            "statements": n,
            "file_mb": round(size_mb, 1),
            "ray_copies": args.copies,
            "ray_read_tasks": read_tasks,
            "repeats": args.repeats,
            "median_s": {k: round(v, 4) for k, v in results.items()},
            "statements_per_s": {k: round(v) for k, v in rate.items()},
            "ratio_vs_rdflib": {k: round(rate[k] / rate["rdflib"], 2) for k in results if k != "rdflib"},
            "ray_scaling_2_vs_1": round(results["kgscale_ray_1"] / results["kgscale_ray_2"], 2),
        }
        summary["load_average_1min"] = round(os.getloadavg()[0], 2)
        print(json.dumps(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
