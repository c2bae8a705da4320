"""Embedding throughput: kgscale's embedder against sentence-transformers' ``encode``.

The texts are what KG completion on WN18RR embeds: every entity's view and
every test query's view (46,659 texts; ``--limit N`` takes an even sample
of N). Each implementation runs in this process, one after the other, on the
same threads (``--threads``, default 2), with all-MiniLM-L6-v2:

- sentence-transformers ``encode`` with its defaults (batch 32, fp32), the
  baseline a user would reach for, and with the model in bf16;
- kgscale's :class:`kgscale.models.embed.Embedder` in fp32 and in bf16
  (length-sorted micro-batches padded to their own longest text, one
  batched tokenizer call);
- kgscale's embedder on the tiny 2-layer model (``tiny-llama``), whose cost
  is almost all per-batch overhead, beside the same embedder running every
  layer at every token (the forward before :mod:`kgscale.models.last_token`),
  the two alternated call by call.

The equivalence of bf16 is measured on the same texts: the cosine of each
bf16 embedding to its fp32 one (min and mean). Times are medians of
``--repeats`` calls after a warm-up call.

    PYTHONPATH=$PWD python bench/embed_throughput.py [--limit 8000] [--repeats 3] [--tiny-only]

Prints a table and a final JSON line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def wn18rr_texts(shared: Path, limit: int | None) -> list[str]:
    """Entity views and test query views as kgscale's KG completion builds them."""
    from kgscale.kg.text import entity_text, query_text

    d = shared / "wn18rr"
    ents = {}
    for line in (d / "entities.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        key, name, desc = (line.split("\t") + ["", ""])[:3]
        ents[key] = entity_text(name, desc)
    rels = dict(line.split("\t")[:2] for line in (d / "relations.tsv").read_text(encoding="utf-8").splitlines()[1:])
    texts = [t for t in ents.values() if t]
    queries = set()
    for line in (d / "test.txt").read_text(encoding="utf-8").splitlines():
        h, r, t = line.split("\t")
        queries.add(query_text(ents[h], rels[r], False))
        queries.add(query_text(ents[t], rels[r], True))
    texts += sorted(queries)
    if limit and limit < len(texts):
        texts = [texts[i] for i in np.linspace(0, len(texts) - 1, limit).astype(int)]
    return texts


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (and the result)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


@contextlib.contextmanager
def every_layer_at_every_token():
    """The embedder's forward as it was before the last layer ran at the last
    token only: the whole trunk, then pooling."""
    from kgscale.models.last_token import LastTokenForward

    of = LastTokenForward.__dict__["of"]
    LastTokenForward.of = classmethod(lambda cls, trunk: None)
    try:
        yield
    finally:
        LastTokenForward.of = of


def tiny_alternated(texts: list[str], max_length: int, repeats: int) -> dict[str, tuple[float, np.ndarray]]:
    """The tiny model's embedding with and without the last-token forward,
    alternated call by call after a warm-up of each (this machine's speed
    drifts by a third within minutes at this scale): median seconds and the
    embeddings of each."""
    from kgscale.models.embed import Embedder

    tiny = Embedder({"model": "tiny-llama"}, max_length=max_length)
    runs: dict[str, list[float]] = {"full": [], "last": []}
    out: dict[str, np.ndarray] = {}
    for i in range(repeats + 1):
        for name in runs:
            with every_layer_at_every_token() if name == "full" else contextlib.nullcontext():
                t0 = time.perf_counter()
                out[name] = tiny.embed(texts)
                if i:
                    runs[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(v), out[name]) for name, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--tiny-only", action="store_true", help="only the tiny model's two rows")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    torch.set_num_threads(args.threads)

    texts = wn18rr_texts(Path(args.shared), args.limit)
    rows, results = [], {}

    def record(name, seconds, emb):
        results[name] = emb
        rows.append({"implementation": name, "seconds": round(seconds, 3), "texts_per_s": round(len(texts) / seconds, 1)})
        print(f"  {name:<46} {seconds:8.2f} s  {len(texts) / seconds:9.0f} texts/s", flush=True)

    print(f"{len(texts):,} texts (WN18RR entity + test query views), {args.threads} threads, "
          f"median of {args.repeats} after a warm-up")
    if args.tiny_only:
        tiny = tiny_alternated(texts, args.max_length, args.repeats)
        record("kgscale tiny-llama, every layer at every token", *tiny["full"])
        record("kgscale tiny-llama (auto precision)", *tiny["last"])
        same = (tiny["full"][1] * tiny["last"][1]).sum(1)
        ratio = tiny["full"][0] / tiny["last"][0]
        print(f"last-token forward x{ratio:.2f}; cosine to every-layer min {same.min():.6f}")
        print(json.dumps({"bench": "embed_throughput", "texts": len(texts), "threads": args.threads, "rows": rows,
                          "tiny_last_token_speedup": round(ratio, 3), "tiny_last_token_cosine_min": round(float(same.min()), 6)}))
        return

    from sentence_transformers import SentenceTransformer

    from kgscale.models.backbone import BackboneConfig, resolve
    from kgscale.models.embed import Embedder

    path = str(resolve(BackboneConfig(model="all-minilm-l6-v2")))
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    record("sentence-transformers fp32 (default)", *timed(lambda: st.encode(texts, normalize_embeddings=True), args.repeats))
    st_bf16 = SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.bfloat16})
    st_bf16.max_seq_length = args.max_length
    record("sentence-transformers bf16", *timed(
        lambda: st_bf16.encode(texts, normalize_embeddings=True).astype(np.float32), args.repeats))
    del st, st_bf16
    for dtype in ("float32", "bfloat16"):
        emb = Embedder({"model": "all-minilm-l6-v2"}, dtype=dtype, max_length=args.max_length)
        record(f"kgscale {'fp32' if dtype == 'float32' else 'bf16'}", *timed(lambda: emb.embed(texts), args.repeats))
        del emb
    tiny = tiny_alternated(texts, args.max_length, args.repeats)
    record("kgscale tiny-llama, every layer at every token", *tiny["full"])
    record("kgscale tiny-llama (auto precision)", *tiny["last"])

    base = rows[0]["seconds"]
    for r in rows:
        r["vs_sentence_transformers_fp32"] = round(base / r["seconds"], 2)
    f32, b16 = results["kgscale fp32"], results["kgscale bf16"]
    cos = (f32 * b16).sum(1)
    agree = (results["sentence-transformers fp32 (default)"] * f32).sum(1)
    print("\nratios to sentence-transformers fp32 (higher is faster):")
    for r in rows:
        print(f"  {r['implementation']:<46} x{r['vs_sentence_transformers_fp32']:.2f}")
    print(f"bf16 vs fp32 (kgscale): cosine min {cos.min():.5f}, mean {cos.mean():.6f}; "
          f"kgscale fp32 vs sentence-transformers fp32: cosine min {agree.min():.6f}")
    print(json.dumps({"bench": "embed_throughput", "texts": len(texts), "threads": args.threads, "rows": rows,
                      "bf16_cosine_min": round(float(cos.min()), 6), "bf16_cosine_mean": round(float(cos.mean()), 6),
                      "fp32_vs_sentence_transformers_cosine_min": round(float(agree.min()), 6)}))


if __name__ == "__main__":
    main()
