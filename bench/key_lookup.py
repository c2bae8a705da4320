"""Ingest's key -> id lookup: kgscale's KeyIndex (the vocabulary hashed once)
against ``pyarrow.compute.index_in`` (what an encode task did before: the
whole vocabulary hashed on every call), side by side in one process.

For each vocabulary size (entity keys shaped like the synthetic KG's IRIs,
``http://kgscale.example/entity/E123``), one encode task's lookup is timed:
``--block`` keys (60,000: the head and tail keys of the triples of one 8 MiB
read task) drawn from the vocabulary, plus 1% that are not in it. Medians of
``--repeats`` calls, on this process's threads; the KeyIndex's one-off build
is reported on its own. Ids are checked equal on every call.

    PYTHONPATH=$PWD python bench/key_lookup.py [--sizes 100000,1000000,4444444] [--repeats 3]

Prints a table and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kgscale.kg.key_index import KeyIndex


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def run(size: int, block: int, repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vocab = pc.binary_join_element_wise("http://kgscale.example/entity/E", pa.array(np.arange(size).astype(str)), "")
    vocab = vocab.sort()  # ingest's vocabulary: sorted, an id is a position
    if isinstance(vocab, pa.ChunkedArray):
        vocab = vocab.combine_chunks()
    picks = vocab.take(pa.array(rng.integers(0, size, block)))
    misses = pa.array([f"http://kgscale.example/other/{i}" for i in range(block // 100)])
    keys = pa.concat_arrays([picks, misses]).take(pa.array(rng.permutation(block + len(misses))))
    t = time.perf_counter()
    index = KeyIndex(vocab)
    build_s = time.perf_counter() - t
    KeyIndex(pa.array(["warm", "up"])).lookup(pa.array(["up"]))  # the compiled hash, loaded once
    arrow_s, want = _timed(lambda: pc.index_in(keys, value_set=vocab).cast(pa.int32()), repeats)
    ours_s, got = _timed(lambda: index.lookup(keys), repeats)
    assert got.equals(want), "KeyIndex ids differ from index_in's"
    return {"vocabulary": size, "block": len(keys), "index_in_s": round(arrow_s, 4), "key_index_s": round(ours_s, 4),
            "speedup": round(arrow_s / ours_s, 1), "key_index_build_s": round(build_s, 3), "exact": index.exact}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,4444444")
    ap.add_argument("--block", type=int, default=60000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = [run(int(s), args.block, args.repeats) for s in args.sizes.split(",")]
    print(f"{'vocabulary':>11} {'block':>7} {'index_in s':>11} {'KeyIndex s':>11} {'ratio':>7} {'build s':>8}")
    for r in rows:
        print(f"{r['vocabulary']:>11,} {r['block']:>7,} {r['index_in_s']:>11.4f} {r['key_index_s']:>11.4f} "
              f"{'x' + str(r['speedup']):>7} {r['key_index_build_s']:>8.3f}")
    print(json.dumps({"bench": "key_lookup", "rows": rows}))


if __name__ == "__main__":
    main()
