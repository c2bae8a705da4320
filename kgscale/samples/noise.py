"""BART text infilling (Lewis et al. 2020), the noise KILM puts on the context.

Span lengths are drawn from Poisson(lambda) until they cover ``ratio`` of the
tokens (the last one is trimmed so the count is exact); each span, whatever
its length, becomes a single mask token, so the model must also infer how
many tokens are missing; a span of length 0 inserts a mask. Spans are placed
uniformly at random without overlap: the unmasked tokens are split into
len(spans) + 1 gaps by a random composition.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def span_lengths(n: int, ratio: float, poisson_lambda: float, rng: np.random.Generator) -> list[int]:
    """Poisson span lengths summing to exactly round(n * ratio)."""
    budget = min(n, int(math.floor(n * ratio + 0.5)))
    lengths: list[int] = []
    total = 0
    while total < budget:
        length = int(rng.poisson(poisson_lambda))
        lengths.append(length)
        total += length
    if lengths:
        lengths[-1] -= total - budget
    return lengths


def text_infilling(ids: Sequence[int], mask_id: int, ratio: float = 0.3, poisson_lambda: float = 3.0,
                   rng: np.random.Generator | None = None) -> list[int]:
    """``ids`` with spans covering ``ratio`` of them replaced by one ``mask_id`` each."""
    rng = rng if rng is not None else np.random.default_rng()
    ids = list(ids)
    lengths = span_lengths(len(ids), ratio, poisson_lambda, rng)
    if not lengths:
        return ids
    unmasked = len(ids) - sum(lengths)
    cuts = np.sort(rng.integers(0, unmasked + 1, size=len(lengths)))
    gaps = np.diff(np.concatenate([[0], cuts, [unmasked]]))
    out: list[int] = []
    pos = 0
    for gap, length in zip(gaps[:-1], lengths):
        out.extend(ids[pos:pos + gap])
        pos += gap
        out.append(mask_id)
        pos += length
    out.extend(ids[pos:])
    return out
