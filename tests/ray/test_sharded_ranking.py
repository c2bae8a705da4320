"""Ranking against candidates sharded over Ray actors gives exactly the ranks
of the single-process filtered_ranks: ties across shards and filters included."""
import numpy as np
import pytest

from kgscale.kg.answers import AnswerIndex
from kgscale.eval.ranking import QueryFilters, filtered_ranks
from kgscale.eval.reference import loop_ranks
from kgscale.eval.sharded_ranking import ShardedRanker, shard_bounds

# 1-3 actors on the session's 2-CPU Ray
HALF_CPU = {"num_cpus": 0.5}


def _ties_problem(seed=0, n=41, num=60, d=5):
    """Small-integer embeddings (scores exact in any order, so many ties), a
    candidate duplicated into every shard, and filter lists from real triples
    (an AnswerIndex, as `kgscale eval kgc` builds them)."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    e = rng.integers(-2, 3, size=(num, d)).astype(np.float32)
    e[[5, 25, 45, 59]] = e[4]  # ties with candidate 4 in each of 3 shards
    targets = rng.integers(0, num, size=n)
    targets[:6] = [4, 25, 59, 4, 45, 5]
    head = rng.integers(0, 15, size=n)
    rel = rng.integers(0, 3, size=n)
    # other true answers of the same (head, relation): spread over all shards
    extra_h = np.repeat(head, 4)
    extra_r = np.repeat(rel, 4)
    extra_t = rng.integers(0, num, size=4 * n)
    extra_t[:8] = [5, 25, 45, 59, 5, 25, 45, 59]  # filtered duplicates of the target's tie group
    idx = AnswerIndex.from_triples(np.concatenate([head, extra_h]), np.concatenate([rel, extra_r]),
                                   np.concatenate([targets, extra_t]), num_relations=3)
    start, stop = idx.spans(head, rel, np.zeros(n, dtype=np.int64))
    filters = QueryFilters(start=start, stop=stop, answers=idx.answers)
    return q, e, targets, filters


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_sharded_ranks_equal_single_process_with_ties_and_filters(shards):
    q, e, targets, filters = _ties_problem()
    expected = filtered_ranks(q, e, targets, filters, chunk_rows=7, device="cpu")
    rows, cols = filters.pairs(0, len(q))
    sets = [cols[rows == i].tolist() for i in range(len(q))]
    np.testing.assert_array_equal(expected, loop_ranks(q, e, targets, sets))
    assert np.any(expected % 1 == 0.5)  # ties mattered
    assert len(rows) > len(q)  # and filters did
    # chunk_mb that makes a chunk a few queries: several score/count rounds
    with ShardedRanker(e, num_shards=shards, chunk_mb=4 * 60 * 9 / (1 << 20), actor_options=HALF_CPU) as ranker:
        assert ranker.rows_per_chunk < len(q)
        got = ranker.ranks(q, targets, filters)
        np.testing.assert_array_equal(got, expected)
        # a second query set on the same actors
        np.testing.assert_array_equal(ranker.ranks(q[:10], targets[:10]),
                                      filtered_ranks(q[:10], e, targets[:10], device="cpu"))
        mem = ranker.memory()
    assert [(m["lo"], m["hi"]) for m in mem] == shard_bounds(len(e), shards)
    assert all(m["shard_bytes"] == (m["hi"] - m["lo"]) * e.shape[1] * 4 and m["peak_rss_bytes"] > 0 for m in mem)


def test_random_unit_embeddings_loaded_inside_the_actors():
    rng = np.random.default_rng(5)
    num, d = 3001, 64

    def rows(lo, hi):  # what a shard loader does: build (or read) only its own rows
        x = np.random.default_rng(100).standard_normal((num, d)).astype(np.float32)[lo:hi]
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    e = rows(0, num)
    q = rng.standard_normal((300, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    targets = rng.integers(0, num, size=300)
    filters = QueryFilters.from_lists([rng.choice(num, size=rng.integers(0, 30), replace=False) for _ in range(300)])
    expected = filtered_ranks(q, e, targets, filters, device="cpu")
    with ShardedRanker(loader=rows, num_candidates=num, num_shards=2, actor_options=HALF_CPU) as ranker:
        np.testing.assert_array_equal(ranker.ranks(q, targets, filters), expected)


def test_bad_inputs_are_errors():
    e = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="num_shards"):
        shard_bounds(4, 5)
    with pytest.raises(ValueError, match="either candidates or loader"):
        ShardedRanker(num_shards=1)
    with ShardedRanker(e, num_shards=2, actor_options=HALF_CPU) as ranker:
        with pytest.raises(ValueError, match="target rows"):
            ranker.ranks(e, [0, 1, 2, 4])
        bad = e.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="non-finite"):
            ranker.ranks(bad, [0, 1, 2, 3])
