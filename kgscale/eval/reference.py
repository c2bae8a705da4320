"""Straightforward filtered ranking, to check and to measure against.

:func:`loop_ranks` is the definition written out, one query and one candidate
at a time in float64: the reference the chunked :mod:`kgscale.eval.ranking`
must equal. :func:`dense_ranks` is what one writes first with a tensor
library: the whole queries-by-candidates score matrix and a dense boolean
filter mask; it is the baseline of ``bench/ranking.py``.
"""
from __future__ import annotations

import numpy as np
import torch


def loop_ranks(queries, candidates, targets, filter_sets: list) -> np.ndarray:
    """rank = 1 + #(unfiltered s_j > s_true) + #(unfiltered j != true with s_j == s_true) / 2."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(candidates, dtype=np.float64).T
    ranks = np.empty(len(targets), dtype=np.float64)
    for i, t in enumerate(targets):
        skip = set(int(x) for x in filter_sets[i]) - {int(t)}
        greater = ties = 0
        for j, s in enumerate(scores[i]):
            if j == t or j in skip:
                continue
            greater += s > scores[i, t]
            ties += s == scores[i, t]
        ranks[i] = 1 + greater + ties / 2
    return ranks


def dense_ranks(queries, candidates, targets, filters) -> np.ndarray:
    """The whole score matrix and a dense mask (``filters``: a QueryFilters)."""
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    e = torch.as_tensor(np.asarray(candidates, dtype=np.float32))
    targets = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    n = q.shape[0]
    scores = q @ e.T
    true = scores[torch.arange(n), targets].clone()
    mask = torch.zeros_like(scores, dtype=torch.bool)
    rows, cols = filters.pairs(0, n)
    ok = cols >= 0
    mask[torch.as_tensor(rows[ok]), torch.as_tensor(cols[ok])] = True
    mask[torch.arange(n), targets] = False
    scores[mask] = float("-inf")
    greater = (scores > true[:, None]).sum(1)
    ties = (scores == true[:, None]).sum(1) - 1
    return (1 + greater + ties / 2).double().numpy()
