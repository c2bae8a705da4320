"""Example queries of a KG completion run: what the model puts first.

A few queries, drawn by a fixed seed from the split's rows (so the starting
model and the trained one show the same queries), each with its top-k
candidates as filtered ranking sees them: the query's other known answers
left out, the true answer kept and marked where it is among them.
"""
from __future__ import annotations

import numpy as np

from kgscale.eval.ranking import QueryFilters


def sample_queries(num_triples: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` of the ``2 * num_triples`` query positions of a split (queries
    0..m-1 ask for tails, m..2m-1 for heads), drawn by a fixed seed."""
    if k <= 0 or num_triples <= 0:
        return np.zeros(0, np.int64)
    return np.random.default_rng(seed).permutation(2 * num_triples)[:k].astype(np.int64)


def top_candidates(query_emb: np.ndarray, cand_emb: np.ndarray, targets: np.ndarray, filters: QueryFilters,
                   picks: np.ndarray, top: int = 5) -> list[list[tuple[int, float]]]:
    """For each query in ``picks``: its ``top`` (candidate row, cosine) pairs,
    best first, the query's other known answers excluded."""
    if len(picks) == 0:
        return []
    scores = np.asarray(query_emb[picks], np.float32) @ np.asarray(cand_emb, np.float32).T
    out = []
    for j, i in enumerate(picks):
        s = scores[j]
        known = filters.answers[filters.start[i]:filters.stop[i]]
        known = known[(known >= 0) & (known != targets[i])]
        s[known] = -np.inf
        k = min(top, len(s))
        best = np.argpartition(-s, k - 1)[:k]
        best = best[np.argsort(-s[best], kind="stable")]
        out.append([(int(c), float(s[c])) for c in best])
    return out
