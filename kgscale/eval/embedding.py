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
from pydantic import Field

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
    # (texts of similar length share a pass: kgscale.models.embed.length_batches);
    # None: by the model's width on a CPU (a pass's hidden states about a
    # million elements: 2,730 tokens for MiniLM), 16,384 on a GPU
    # (kgscale.models.embed.pass_tokens)
    micro_batch: int = Field(512, ge=1)
    micro_batch_tokens: int | None = Field(None, ge=1)
    # auto: bf16 on GPUs and on CPUs with bf16 matrix units, fp32 elsewhere
    dtype: DTypeChoice = "auto"
    # reuse embeddings of the same texts by the same weights (kgscale.models.embed_cache)
    cache: bool = True


def embed_texts(texts: list[str], model: BackboneConfig, cfg: EmbedConfig, role: str = "query") -> np.ndarray:
    """float32 [len(texts), D] unit rows, in the order of ``texts``; ``role``
    ``key`` embeds with a two-tower model's key tower (entity views)."""
    return embed_parts([(texts, role)], model, cfg)[0]


def embed_parts(parts: list[tuple[list[str], str]], model: BackboneConfig, cfg: EmbedConfig) -> list[np.ndarray]:
    """:func:`embed_texts` of each (texts, role) part, the parts the cache
    does not hold embedded in one Ray Data pipeline: an actor pool (each
    actor loading the model once, and a model's key tower beside it) costs
    seconds to start, which a small model's whole embedding can take less
    than. A model trained against a whitened bank has its whitening applied
    to every part, after the cache (which keeps the towers' own embeddings,
    :mod:`kgscale.models.whitening`)."""
    from kgscale.models import embed_cache
    from kgscale.models.whitening import load_whitening

    keys = [_cache_key(texts, model, cfg, role) if cfg.cache else None for texts, role in parts]
    out: list[np.ndarray | None] = [None] * len(parts)
    for i, ((texts, _), key) in enumerate(zip(parts, keys)):
        if key is not None:
            out[i] = embed_cache.load(key, len(texts))
    todo = [i for i, x in enumerate(out) if x is None]
    if todo:
        for i, emb in zip(todo, _embed([parts[i] for i in todo], model, cfg)):
            out[i] = emb
            if keys[i] is not None:
                embed_cache.store(keys[i], emb)
    whitening = load_whitening(model.model)
    return out if whitening is None else [whitening.apply_numpy(x) for x in out]


def completion_views(tokenizer, kind: str, cfg: "EmbedConfig", ent_texts: list[str], rel_texts: list[str],
                     entity, relation, inverse) -> tuple[list[str], list[str]]:
    """The views KG completion embeds, the same ones training embeds: every
    entity's view (cut to ``cfg.max_entity_tokens``) and each (entity,
    relation, direction) query's view (the entity cut so the relation fits).
    ``kgscale eval kgc`` and ``kgscale predict`` both use these."""
    from kgscale.models.tokenize import query_view_texts, truncate_texts

    append_eos = kind == "causal" and cfg.pooling in ("auto", "last")
    ent_views = ent_texts if cfg.max_entity_tokens is None else truncate_texts(
        tokenizer, [t or " " for t in ent_texts], cfg.max_entity_tokens)
    queries = query_view_texts(tokenizer, [ent_texts[e] for e in entity], [rel_texts[r] for r in relation],
                               [bool(x) for x in inverse], cfg.max_entity_tokens, cfg.max_length, append_eos)
    return list(ent_views), queries


def _cache_key(texts: list[str], model: BackboneConfig, cfg: EmbedConfig, role: str) -> str | None:
    """The cache key, or None when the weights have no stable identity here
    (a hub id, a tiny model built on the fly)."""
    from pathlib import Path

    from kgscale.models import embed_cache
    from kgscale.models.backbone import resolve
    from kgscale.models.embed import torch_dtype
    from kgscale.models.inference import adapter_dir, base_config
    from kgscale.models.towers import key_tower_dir

    key_dir = key_tower_dir(model.model) if role == "key" else None
    if key_dir is not None:
        path = key_dir
    elif adapter_dir(model) is not None and not (Path(model.model) / "config.json").is_file():
        return None  # an adapter on a base elsewhere: both would need hashing
    else:
        path = resolve(base_config(model))
    if not isinstance(path, Path) or not path.is_dir():
        return None
    try:
        identity = embed_cache.weights_identity(path)
    except FileNotFoundError:
        return None
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    settings = {"pooling": cfg.pooling, "max_length": cfg.max_length, "dtype": str(torch_dtype(cfg.dtype, device)),
                "device": device, "kind": model.kind}
    return embed_cache.cache_key(identity, settings, texts)


def _embed(parts: list[tuple[list[str], str]], model: BackboneConfig, cfg: EmbedConfig) -> list[np.ndarray]:
    from kgscale.models.embed import Embedder

    tables, offset = [], 0
    for texts, role in parts:
        n = len(texts)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows at once
        tables.append(pa.table({"row": pa.array(order + offset, pa.int64()),
                                "text": pa.array([texts[i] for i in order], pa.string()),
                                "role": pa.array([role] * n, pa.string())}))
        offset += n
    # blocks of one part each; a batch that spans two parts is split by role in the actor
    blocks = [t.slice(i, cfg.batch_size) for t in tables for i in range(0, t.num_rows, cfg.batch_size)]
    roles = list(dict.fromkeys(role for _, role in parts))
    ds = ray.data.from_arrow(blocks or [tables[0]]).map_batches(
        Embedder,
        # the backbone alone (a training run's ModelSettings carries LoRA and precision too)
        fn_constructor_kwargs={"model": model.model_dump(include=set(BackboneConfig.model_fields)), "pooling": cfg.pooling, "max_length": cfg.max_length,
                               "dtype": cfg.dtype, "num_threads": threads(cfg), "micro_batch": cfg.micro_batch,
                               "micro_batch_tokens": cfg.micro_batch_tokens, "role": roles},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        **map_batches_args(cfg),
    )
    from kgscale.console import Ticker

    full = None
    what = " and ".join({"key": "entity", "query": "query"}[r] for r in roles)
    ticker, done = Ticker(f"embedding {what} views", offset, "texts"), 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        emb = np.asarray(batch["embedding"], dtype=np.float32)
        if full is None:
            full = np.empty((offset, emb.shape[1]), dtype=np.float32)
        full[batch["row"]] = emb
        done += len(emb)
        ticker.update(done)
    if full is None or not offset:
        raise ValueError("nothing to embed")
    ticker.done()
    bounds = np.cumsum([0] + [len(t) for t, _ in parts])
    return [full[bounds[i]:bounds[i + 1]] for i in range(len(parts))]
