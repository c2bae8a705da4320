import numpy as np
import pytest

from kgscale.kg.graph import CSRGraph, degree_summary


def test_both_directions_with_inverse_flags():
    # 0 -r0-> 1, 1 -r1-> 2, 0 -r1-> 0 (self loop)
    g = CSRGraph.from_triples([0, 1, 0], [0, 1, 1], [1, 2, 0], num_entities=4, num_relations=2)
    assert g.num_edges == 6
    edges = {n: sorted(zip(*[a.tolist() for a in g.edges(n)])) for n in range(4)}
    assert edges[0] == [(0, 1, False), (0, 1, True), (1, 0, False)]
    assert edges[1] == [(0, 0, True), (2, 1, False)]
    assert edges[2] == [(1, 1, True)]
    assert edges[3] == []
    assert g.degree().tolist() == [3, 2, 1, 0]
    # each edge points back to its triple row
    for n in range(4):
        a, b = g.indptr[n], g.indptr[n + 1]
        for k in range(a, b):
            h, r, t = [(0, 0, 1), (1, 1, 2), (0, 1, 0)][g.triple[k]]
            assert g.relation[k] == r
            assert (n, g.neighbor[k]) == ((h, t) if not g.inverse[k] else (t, h))


def test_matches_naive_adjacency_on_random_graph():
    rng = np.random.default_rng(0)
    h, r, t = rng.integers(0, 50, 400), rng.integers(0, 5, 400), rng.integers(0, 50, 400)
    g = CSRGraph.from_triples(h, r, t, 50, 5)
    for n in range(50):
        naive = sorted([(int(b), int(c), False) for a, c, b in zip(h, r, t) if a == n] +
                       [(int(a), int(c), True) for a, c, b in zip(h, r, t) if b == n])
        got = list(zip(*[x.tolist() for x in g.edges(n)]))
        assert got == naive  # also checks the (neighbour, relation, inverse) sort order


def test_out_of_range_ids_are_errors():
    with pytest.raises(ValueError, match="entity id out of range"):
        CSRGraph.from_triples([0], [0], [5], 5, 1)
    with pytest.raises(ValueError, match="relation id out of range"):
        CSRGraph.from_triples([0], [3], [1], 5, 1)


def test_degree_summary_histogram():
    s = degree_summary(np.array([0, 1, 2, 3, 4, 9]))
    assert s["histogram"] == {"0": 1, "1": 1, "2-3": 2, "4-7": 1, "8-15": 1}
    assert s["max"] == 9 and s["isolated"] == 1
