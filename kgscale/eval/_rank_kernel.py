"""The CPU kernel of :func:`kgscale.eval.ranking.filtered_ranks`: one read of
each score, rows in parallel (numba threads, as many as torch uses)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=False)
def greater_minus_less(scores: np.ndarray, true: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(scores.shape[0]):
        t = true[i]
        row = scores[i]
        greater = 0
        less = 0
        for j in range(row.shape[0]):
            v = row[j]
            greater += v > t
            less += v < t
        out[i] = greater - less
