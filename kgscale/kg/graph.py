"""CSR adjacency over a snapshot's triples, in both directions.

Every triple (h, r, t) gives two edges: h -> t with relation r (``inverse``
False) and t -> h with relation r (``inverse`` True), so a walk can follow
an edge either way and still say which way it went. The arrays are plain
numpy, so ``ray.put(graph)`` stores them once and every worker that gets
the graph maps them read-only, without a copy.

Edges of a node are ``indptr[node]:indptr[node + 1]``, sorted by
(neighbour, relation, inverse) so lookups can bisect.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSRGraph:
    num_entities: int
    num_relations: int
    indptr: np.ndarray  # int64 [num_entities + 1]
    neighbor: np.ndarray  # int32 [2 * num_triples]
    relation: np.ndarray  # int32 [2 * num_triples]
    inverse: np.ndarray  # bool  [2 * num_triples]; True: the edge walks a triple tail -> head
    triple: np.ndarray  # int64 [2 * num_triples]; row of the triple in the table it was built from

    @classmethod
    def from_triples(
        cls, head: np.ndarray, relation: np.ndarray, tail: np.ndarray, num_entities: int, num_relations: int
    ) -> "CSRGraph":
        head = np.asarray(head, dtype=np.int64)
        tail = np.asarray(tail, dtype=np.int64)
        relation = np.asarray(relation, dtype=np.int32)
        m = len(head)
        if not (len(relation) == len(tail) == m):
            raise ValueError("head, relation and tail must have the same length")
        if m and (min(head.min(), tail.min()) < 0 or max(head.max(), tail.max()) >= num_entities):
            raise ValueError(f"entity id out of range [0, {num_entities})")
        if m and (relation.min() < 0 or relation.max() >= num_relations):
            raise ValueError(f"relation id out of range [0, {num_relations})")
        src = np.concatenate([head, tail])
        dst = np.concatenate([tail, head])
        rel = np.concatenate([relation, relation])
        inv = np.concatenate([np.zeros(m, bool), np.ones(m, bool)])
        tri = np.concatenate([np.arange(m), np.arange(m)])
        order = np.lexsort((inv, rel, dst, src))
        counts = np.bincount(src, minlength=num_entities)
        indptr = np.zeros(num_entities + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            num_entities=int(num_entities),
            num_relations=int(num_relations),
            indptr=indptr,
            neighbor=dst[order].astype(np.int32),
            relation=rel[order],
            inverse=inv[order],
            triple=tri[order],
        )

    @classmethod
    def from_snapshot(cls, snapshot, splits: tuple[str, ...] = ("train",)) -> "CSRGraph":
        """The graph of a snapshot's ``splits`` (default: training triples only,
        so nothing mined from it can leak valid or test triples)."""
        t = snapshot.triples(splits)
        return cls.from_triples(
            t["head"].to_numpy(),
            t["relation"].to_numpy(),
            t["tail"].to_numpy(),
            snapshot.num_entities,
            snapshot.num_relations,
        )

    @property
    def num_edges(self) -> int:
        return int(len(self.neighbor))

    def degree(self) -> np.ndarray:
        """Edges per entity, both directions counted (a self-loop counts twice)."""
        return np.diff(self.indptr)

    def edges(self, node: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(neighbour, relation, inverse) of every edge leaving ``node``."""
        a, b = self.indptr[node], self.indptr[node + 1]
        return self.neighbor[a:b], self.relation[a:b], self.inverse[a:b]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.neighbor, self.relation, self.inverse, self.triple))


def degree_summary(degree: np.ndarray) -> dict:
    """Quantiles and a power-of-two histogram of a degree array."""
    if len(degree) == 0:
        return {"min": 0, "median": 0, "mean": 0.0, "p90": 0, "p99": 0, "max": 0, "isolated": 0, "histogram": {}}
    q = np.percentile(degree, [50, 90, 99])
    # buckets: 0, 1, 2-3, 4-7, 8-15, ...
    nonzero = degree[degree > 0]
    buckets = np.floor(np.log2(nonzero)).astype(int) if len(nonzero) else np.array([], int)
    hist = {"0": int((degree == 0).sum())}
    for b, c in zip(*np.unique(buckets, return_counts=True)):
        lo, hi = 1 << int(b), (1 << (int(b) + 1)) - 1
        hist[str(lo) if lo == hi else f"{lo}-{hi}"] = int(c)
    return {
        "min": int(degree.min()),
        "median": float(q[0]),
        "mean": round(float(degree.mean()), 3),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": int(degree.max()),
        "isolated": int((degree == 0).sum()),
        "histogram": hist,
    }
