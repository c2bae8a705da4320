from __future__ import annotations

import numpy as np
import pytest

from kgscale.samples.noise import span_lengths, text_infilling

MASK = -1


@pytest.mark.parametrize("n,ratio", [(10, 0.3), (37, 0.3), (100, 0.5), (5, 0.0), (1, 1.0)])
def test_span_lengths_cover_exactly_the_ratio(n, ratio):
    lengths = span_lengths(n, ratio, 3.0, np.random.default_rng(0))
    assert sum(lengths) == round(n * ratio)
    assert all(x >= 0 for x in lengths)


def test_text_infilling_replaces_each_span_with_one_mask():
    ids = list(range(100))
    for seed in range(20):
        rng = np.random.default_rng(seed)
        lengths = span_lengths(100, 0.3, 3.0, np.random.default_rng(seed))
        out = text_infilling(ids, MASK, 0.3, 3.0, rng)
        kept = [x for x in out if x != MASK]
        assert out.count(MASK) == len(lengths)  # one mask a span, zero-length spans insert one
        assert len(kept) == 70  # exactly 30% removed
        assert kept == sorted(kept)  # the rest stays in order
    assert text_infilling(ids, MASK, rng=np.random.default_rng(1)) == text_infilling(ids, MASK, rng=np.random.default_rng(1))


def test_text_infilling_mean_span_length_follows_poisson():
    lengths = [x for s in range(200) for x in span_lengths(200, 0.3, 3.0, np.random.default_rng(s))[:-1]]
    assert 2.7 < np.mean(lengths) < 3.3
