"""KaLM's entity bank, built on the driver before training starts.

``objective.entity_bank`` ranks every query against every entity at every
step: the bank holds each entity's key view embedded by the key tower as
training starts (for a frozen key tower, exactly the key tower for the whole
run), and the key views' token ids when the run re-embeds it
(``bank_refresh_every``; the workers do that, :func:`kgscale.train.loop._refresh_bank`).
``cfg`` is a :class:`kgscale.train.config.TrainConfig`, ``pre`` the driver's
:class:`kgscale.train.run.Preflight`.
"""
from __future__ import annotations


def entity_bank(cfg, pre) -> dict:
    """The entity bank for ``objective.entity_bank``: every entity's key view
    embedded by the starting model (the key tower as training starts) with
    the evaluation's batch inference over the cluster, put in the object
    store; and the key views' token ids, for re-embedding during the run."""
    import numpy as np
    import ray

    from kgscale.eval.embedding import EmbedConfig, embed_texts
    from kgscale.models.training import resolve_precision
    from kgscale.models.tokenize import truncate_texts, view_ids

    texts = pre.snapshot.entity_texts
    valid = np.array([bool(t) for t in texts])
    # the strings and settings evaluation embeds entities with, so the
    # embedding cache serves both (kgscale.models.embed_cache)
    views = truncate_texts(pre.tokenizer, [t or " " for t in texts], cfg.data.max_entity_length)
    embed = EmbedConfig(max_length=cfg.data.max_length, max_entity_tokens=None,
                        dtype="bfloat16" if resolve_precision(cfg.model.precision, cfg.train.use_gpu) == "bf16" else "float32")
    rows = np.flatnonzero(valid)
    emb = embed_texts([views[i] for i in rows], cfg.model, embed, role="key")
    bank = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
    bank[rows] = emb
    out = {"bank": ray.put((bank, valid))}
    if cfg.objective.bank_refresh_every:
        append_eos = pre.kind == "causal"
        out["entity_views"] = ray.put([np.asarray(x, np.int32) for x in view_ids(pre.tokenizer, views, cfg.data.max_length, append_eos)])
    return out
