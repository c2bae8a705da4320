"""Chunked filtered ranking equals the definition, ties and filters included."""
from __future__ import annotations

import numpy as np
import pytest

from kgscale.kg.answers import AnswerIndex
from kgscale.eval.metrics import rank_metrics, ranking_report
from kgscale.eval.ranking import QueryFilters, filtered_ranks
from kgscale.eval.reference import dense_ranks, loop_ranks


def _problem(seed: int, n=37, num=53, d=6, levels=3, max_filter=9):
    """Small-integer embeddings: scores are exact in any float order, and with
    only a few levels per coordinate many candidates tie with the true one."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-levels, levels + 1, size=(n, d)).astype(np.float32)
    e = rng.integers(-levels, levels + 1, size=(num, d)).astype(np.float32)
    e[5:9] = e[4]  # duplicate candidates tie whatever the query
    targets = rng.integers(0, num, size=n)
    targets[:3] = 4  # some targets share their score with duplicates
    lists = []
    for i in range(n):
        f = rng.choice(num, size=rng.integers(0, max_filter), replace=False).tolist()
        if i % 3 == 0:
            f.append(int(targets[i]))  # the own answer is in the filter list: must not be filtered
        if i % 4 == 0:
            f.append(-1)  # an answer that is not a candidate
        lists.append(f)
    return q, e, targets, lists


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_chunked_equals_reference_with_ties(seed, chunk_rows):
    q, e, targets, lists = _problem(seed)
    expected = loop_ranks(q, e, targets, [[x for x in f if x >= 0] for f in lists])
    got = filtered_ranks(q, e, targets, QueryFilters.from_lists(lists), chunk_rows=chunk_rows, device="cpu")
    np.testing.assert_array_equal(got, expected)
    # the tie rule actually mattered: some ranks are x.5 and some ties were filtered
    assert np.any(got % 1 == 0.5)
    assert np.array_equal(dense_ranks(q, e, targets, QueryFilters.from_lists(lists)), expected)


def test_random_float_embeddings_match_reference():
    rng = np.random.default_rng(7)
    q = rng.standard_normal((200, 32)).astype(np.float32)
    e = rng.standard_normal((300, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    targets = rng.integers(0, 300, size=200)
    lists = [rng.choice(300, size=rng.integers(0, 20), replace=False) for _ in range(200)]
    got = filtered_ranks(q, e, targets, QueryFilters.from_lists(lists), chunk_rows=16, device="cpu")
    np.testing.assert_array_equal(got, loop_ranks(q, e, targets, lists))


def test_tie_rule_is_the_expected_rank():
    # every candidate scores the same: the expected rank is the middle, (N + 1) / 2
    q = np.ones((2, 4), np.float32)
    e = np.ones((9, 4), np.float32)
    ranks = filtered_ranks(q, e, [0, 3], QueryFilters.from_lists([[], [1, 2]]), device="cpu")
    assert ranks.tolist() == [5.0, 4.0]  # second query: 2 of the 8 others filtered -> (7 + 1) / 2


def test_nan_embeddings_are_an_error():
    e = np.eye(3, dtype=np.float32)
    e[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        filtered_ranks(np.eye(3, dtype=np.float32), e, [0, 1, 2], device="cpu")


def test_shape_and_target_errors():
    with pytest.raises(ValueError, match="target rows"):
        filtered_ranks(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), [0, 1, 3], device="cpu")
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        filtered_ranks(np.eye(3, dtype=np.float32), np.eye(4, dtype=np.float32), [0, 1, 2], device="cpu")


def test_answer_index_finds_every_true_answer_once():
    # (0, r0, 1), (0, r0, 2) twice (as if in train and test), (3, r1, 1)
    head, rel, tail = np.array([0, 0, 0, 3]), np.array([0, 0, 0, 1]), np.array([1, 2, 2, 1])
    idx = AnswerIndex.from_triples(head, rel, tail, num_relations=2)
    assert idx.answers_of(0, 0, False).tolist() == [1, 2]
    assert idx.answers_of(2, 0, True).tolist() == [0]
    assert idx.answers_of(1, 1, True).tolist() == [3]
    assert idx.answers_of(1, 0, True).tolist() == [0]
    assert idx.answers_of(0, 1, False).tolist() == []  # unknown query: empty
    assert idx.answers_of(9, 1, True).tolist() == []  # past the last key
    start, stop = idx.spans([0, 1, 2], [0, 1, 0], [0, 1, 1])
    assert (stop - start).tolist() == [2, 1, 1]


def test_query_filters_pairs():
    f = QueryFilters.from_lists([[4, 5], [], [7]])
    rows, cols = f.pairs(0, 3)
    assert rows.tolist() == [0, 0, 2] and cols.tolist() == [4, 5, 7]
    rows, cols = f.pairs(1, 3)
    assert rows.tolist() == [1] and cols.tolist() == [7]


def test_metrics_and_report():
    m = rank_metrics([1, 2, 4, 10.5])
    assert m["count"] == 4
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 1 / 10.5) / 4)
    assert m["mr"] == pytest.approx(17.5 / 4)
    assert (m["hits@1"], m["hits@3"], m["hits@10"]) == (0.25, 0.5, 0.75)
    rep = ranking_report([1, 3, 2, 8], inverse=[False, True, False, True], relation=[0, 0, 1, 1],
                         relation_names=["a", "b"])
    assert rep["tail"]["mr"] == 1.5 and rep["head"]["mr"] == 5.5 and rep["both"]["count"] == 4
    assert rep["per_relation"]["b"]["head"]["mr"] == 8
    assert rank_metrics([])["mrr"] is None


def test_with_extra_adds_once_and_ranks_as_the_reference():
    q, e, targets, lists = _problem(3)
    extra = np.array([(i * 7) % 53 for i in range(len(targets))])
    extra[0] = -1
    extra[1] = lists[1][0] if lists[1] and lists[1][0] >= 0 else extra[1]  # already filtered: not added twice
    f = QueryFilters.from_lists(lists).with_extra(extra)
    rows, cols = f.pairs(0, len(targets))
    for i in range(len(targets)):
        mine = cols[rows == i].tolist()
        want = lists[i] + ([int(extra[i])] if extra[i] >= 0 and extra[i] not in lists[i] else [])
        assert sorted(x for x in mine if x >= 0) == sorted(x for x in want if x >= 0)
    sets = [[x for x in lists[i] if x >= 0] + ([int(extra[i])] if extra[i] >= 0 else []) for i in range(len(targets))]
    np.testing.assert_array_equal(filtered_ranks(q, e, targets, f, chunk_rows=5, device="cpu"),
                                  loop_ranks(q, e, targets, sets))


def test_example_queries_show_the_filtered_top_candidates():
    from kgscale.eval.examples import sample_queries, top_candidates

    cand = np.eye(6, dtype=np.float32)
    # query 0 is closest to 1, then 2, then 0; 1 is another known answer, 2 the target
    q = np.array([[0.5, 0.9, 0.7, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 0.2, 1.0]], dtype=np.float32)
    filters = QueryFilters.from_lists([[1, 2], [5]])  # each query's known answers, its target among them
    targets = np.array([2, 5])
    top = top_candidates(q, cand, targets, filters, np.array([0, 1]), top=3)
    assert [c for c, _ in top[0]] == [2, 0, 4]  # 1 filtered out, the target kept
    assert top[0][0][1] == pytest.approx(0.7)
    assert [c for c, _ in top[1]][:2] == [5, 4]
    picks = sample_queries(100, 6)
    assert list(picks) == list(sample_queries(100, 6))  # the same queries for every model
    assert len(set(picks)) == 6 and (picks < 200).all()
    assert sorted(sample_queries(3, 10)) == list(range(6)) and len(sample_queries(0, 5)) == 0
