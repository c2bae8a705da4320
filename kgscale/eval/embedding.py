"""Embed many texts with Ray Data batch inference in an actor pool.

Each actor loads the model once (:class:`kgscale.models.embed.Embedder`); one
per GPU when the cluster has GPUs, else one per node using its cores (torch
is multi-threaded, so one actor with all of a node's cores beats many actors
with one core each and a model copy each). Texts are sorted by length before
batching so that a batch pads to similar lengths, and carry their row so the
result comes back in input order.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import ray

from kgscale.eval.pool import PoolConfig, map_batches_args, threads
from kgscale.models.backbone import BackboneConfig
from kgscale.models.embed import DTypeChoice, PoolingChoice


class EmbedConfig(PoolConfig):
    # auto: last token + EOS for causal LMs (KaLM), mean for encoders (MiniLM)
    pooling: PoolingChoice = "auto"
    # tokens per view (EOS included for causal LMs)
    max_length: int = 64
    # entity texts ("name: description") are cut to this many tokens before a
    # view is composed, as KaLM's reference and kgscale's training do; None: not cut
    max_entity_tokens: int | None = 50
    # texts per Ray Data batch handed to an actor
    batch_size: int = 2048
    # per forward pass: at most this many texts and this many padded tokens
    # (texts of similar length share a pass: kgscale.models.embed.length_batches)
    micro_batch: int = 512
    micro_batch_tokens: int = 16384
    # auto: bf16 on GPUs and on CPUs with bf16 matrix units, fp32 elsewhere
    dtype: DTypeChoice = "auto"


def truncate_entity_texts(texts: list[str], model: BackboneConfig, max_tokens: int | None) -> list[str]:
    """Each text cut to its first ``max_tokens`` tokens of the model's tokenizer (as a string)."""
    if max_tokens is None:
        return list(texts)
    from kgscale.models.inference import load_inference_tokenizer

    tok = load_inference_tokenizer(model)
    ids = tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    return [t if len(x) <= max_tokens else tok.decode(x[:max_tokens], clean_up_tokenization_spaces=False)
            for t, x in zip(texts, ids)]


def embed_texts(texts: list[str], model: BackboneConfig, cfg: EmbedConfig, role: str = "query") -> np.ndarray:
    """float32 [len(texts), D] unit rows, in the order of ``texts``; ``role``
    ``key`` embeds with a two-tower model's key tower (entity views)."""
    from kgscale.models.embed import Embedder

    n = len(texts)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows at once
    table = pa.table({"row": pa.array(order, pa.int64()), "text": pa.array([texts[i] for i in order], pa.string())})
    blocks = [table.slice(i, cfg.batch_size) for i in range(0, n, cfg.batch_size)] or [table]
    ds = ray.data.from_arrow(blocks).map_batches(
        Embedder,
        fn_constructor_kwargs={"model": model.model_dump(), "pooling": cfg.pooling, "max_length": cfg.max_length,
                               "dtype": cfg.dtype, "num_threads": threads(cfg), "micro_batch": cfg.micro_batch,
                               "micro_batch_tokens": cfg.micro_batch_tokens, "role": role},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        **map_batches_args(cfg),
    )
    out = None
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        if out is None:
            out = np.empty((n, emb.shape[1]), dtype=np.float32)
        out[batch["row"]] = emb
    if out is None:
        raise ValueError("nothing to embed")
    return out
