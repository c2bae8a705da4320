"""KaLM training samples from a snapshot: one row a (query, answer) pair.

A triple (h, r, t) gives the row (query = (h, r), answer = t) and, with
``inverse``, the row (query = (t, r^-1), answer = h), as KaLM and SimKGC train
both directions (evaluation asks both too). Texts are the shared views of
:mod:`kgscale.kg.text`; the tokeniser cuts entity texts and composes the
query view (:mod:`kgscale.samples.tokenize`).

Queries and answers carry integer ids so that the contrastive loss can tell
other true pairs from negatives: ``query_id`` is the query's key
(:func:`kgscale.kg.answers.query_keys`, as evaluation names it) and
``answer_id = entity``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from kgscale.kg.answers import query_keys
from kgscale.kg.snapshot import TRIPLES, Snapshot
from kgscale.samples.rejects import SampleRejects


def kalm_samples(snapshot: Snapshot, split: str = "train", inverse: bool = True,
                 rejects: SampleRejects | None = None) -> pa.Table:
    """Columns: ``entity_text`` and ``relation_text`` (the query), ``inverse``,
    ``answer_text``, ``query_id``, ``answer_id`` and ``head_id`` (the query's
    own entity; int64). A triple whose head or tail has no text is rejected
    (recorded in ``rejects``)."""
    t = snapshot.triples(split)
    h, r, tl = (t[c].to_numpy().astype(np.int64) for c in ("head", "relation", "tail"))
    ent = np.array(snapshot.entity_texts, dtype=object)
    rel = np.array(snapshot.relation_texts, dtype=object)
    ok = (ent[h] != "") & (ent[tl] != "")
    if rejects is not None and not ok.all():
        for i in np.flatnonzero(~ok):
            rejects.add(str(snapshot.path / TRIPLES), int(i), "entity without name or description",
                        f"{int(h[i])} {int(r[i])} {int(tl[i])}")
    h, r, tl = h[ok], r[ok], tl[ok]
    heads, tails, inv = [h], [tl], [np.zeros(len(h), bool)]
    rels = [r]
    if inverse:
        heads.append(tl), tails.append(h), inv.append(np.ones(len(h), bool)), rels.append(r)
    h, tl, inv, r = (np.concatenate(x) for x in (heads, tails, inv, rels))
    return pa.table({
        "entity_text": pa.array(ent[h], pa.string()),
        "relation_text": pa.array(rel[r], pa.string()),
        "inverse": pa.array(inv),
        "answer_text": pa.array(ent[tl], pa.string()),
        "query_id": pa.array(query_keys(h, r, inv, snapshot.num_relations)),
        "answer_id": pa.array(tl),
        "head_id": pa.array(h),
    })


def known_pair_keys(snapshot: Snapshot, splits: tuple[str, ...] = ("train",), inverse: bool = True) -> np.ndarray:
    """Sorted unique int64 keys ``query_id * num_entities + answer_id`` of every
    true pair in ``splits`` (both directions with ``inverse``), for masking
    false negatives. Fails if the keys would overflow int64."""
    n, nr = snapshot.num_entities, snapshot.num_relations
    if n * n * 2 * nr >= 2**63:
        raise ValueError(f"{n} entities x {nr} relations is too large for int64 pair keys; "
                         "set objective.mask_known_triples: false (in-batch duplicates are still masked)")
    t = snapshot.triples(splits)
    h, r, tl = (t[c].to_numpy().astype(np.int64) for c in ("head", "relation", "tail"))
    keys = [query_keys(h, r, np.zeros(len(h), bool), nr) * n + tl]
    if inverse:
        keys.append(query_keys(tl, r, np.ones(len(h), bool), nr) * n + h)
    return np.unique(np.concatenate(keys))

