"""Queries and their true answers: the query key, and every true answer of
every query as CSR (filtered ranking, prediction, serving).

A query asks for the tails of (entity, relation) (direction 0) or, for head
prediction, the heads of (entity, relation^-1) (direction 1). Filtered
evaluation removes the *other* true answers of a query, from every split,
before ranking the one under test. Holding them as a dense
queries-by-entities mask costs n * N bytes (260 MB for FB15k-237's test
queries; far more on a real KG); here they are one sorted key array and one
answer array, O(number of triples), and a query's answers are a slice.

A query's key is ``(entity * num_relations + relation) * 2 + direction``
(:func:`query_keys`), the one integer every part of kgscale names a query by
(training's ``query_id`` too). Sorted, the keys let a batch of queries find
its slices with one vectorised ``searchsorted``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def query_keys(entity, relation, inverse, num_relations: int) -> np.ndarray:
    """int64 key of each (entity, relation, direction) query; direction 1
    (``inverse``) asks for the heads of (entity, relation)."""
    entity = np.asarray(entity, dtype=np.int64)
    relation = np.asarray(relation, dtype=np.int64)
    inverse = np.asarray(inverse, dtype=np.int64)
    return (entity * num_relations + relation) * 2 + inverse


@dataclass(frozen=True)
class AnswerIndex:
    num_relations: int
    keys: np.ndarray  # int64 [K], sorted, unique
    indptr: np.ndarray  # int64 [K + 1]; answers of keys[k] are answers[indptr[k]:indptr[k + 1]]
    answers: np.ndarray  # int64 [A], sorted and unique within each key

    @classmethod
    def from_triples(cls, head, relation, tail, num_relations: int) -> "AnswerIndex":
        head = np.asarray(head, dtype=np.int64)
        relation = np.asarray(relation, dtype=np.int64)
        tail = np.asarray(tail, dtype=np.int64)
        m = len(head)
        keys = np.concatenate([query_keys(head, relation, 0, num_relations), query_keys(tail, relation, 1, num_relations)])
        answers = np.concatenate([tail, head])
        order = np.lexsort((answers, keys))
        keys, answers = keys[order], answers[order]
        # the same fact in two splits (or twice in one) must filter once
        if len(keys):
            fresh = np.ones(len(keys), dtype=bool)
            fresh[1:] = (keys[1:] != keys[:-1]) | (answers[1:] != answers[:-1])
            keys, answers = keys[fresh], answers[fresh]
        unique, counts = np.unique(keys, return_counts=True)
        indptr = np.zeros(len(unique) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        assert 2 * m >= len(answers)
        return cls(num_relations=int(num_relations), keys=unique, indptr=indptr, answers=answers)

    @classmethod
    def from_snapshot(cls, snapshot, splits: tuple[str, ...] = ("train", "valid", "test")) -> "AnswerIndex":
        t = snapshot.triples(splits)
        return cls.from_triples(t["head"].to_numpy(), t["relation"].to_numpy(), t["tail"].to_numpy(),
                                snapshot.num_relations)

    def spans(self, entity, relation, inverse) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) into :attr:`answers` for each query; an unknown query gets an empty span."""
        q = query_keys(entity, relation, inverse, self.num_relations)
        pos = np.searchsorted(self.keys, q)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == q[found]
        start = np.where(found, self.indptr[np.minimum(pos, len(self.keys))], 0)
        stop = np.where(found, self.indptr[np.minimum(pos + 1, len(self.keys))], 0)
        return start, stop

    def answers_of(self, entity: int, relation: int, inverse: bool) -> np.ndarray:
        start, stop = self.spans([entity], [relation], [int(inverse)])
        return self.answers[start[0]:stop[0]]
