"""find_paths without caps is networkx's all_simple_edge_paths; with caps, a subset.

kgscale.synth.paths says that with ``fanout=0, max_paths=0`` its search returns
every simple path of at most ``max_hops`` hops, walking triples both ways: the
same set as ``networkx.all_simple_edge_paths`` on the undirected multigraph of
the triples. Checked here on seeded random multigraphs with parallel edges
between one pair (several relations, both directions), self-loops, isolated
entities and a separate component (so some questions have no path at all).

A path is compared as its sequence of steps ``(from, to, (head, relation,
tail))``: the multigraph's edge key is the triple itself, and the search's
edges are mapped to their triple through ``CSRGraph.triple``.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from kgscale.kg.graph import CSRGraph
from kgscale.synth.paths import SearchConfig, SearchIndex, find_paths
from tests.unit.test_paths import reference

EXACT = dict(max_paths=0, fanout=0)
SEEDS = [0, 1, 2, 3]


def random_multigraph(seed: int, n: int = 40, m: int = 110, r: int = 3):
    """Triples [T, 3] (distinct) over n entities: a main component on most of
    them with a few hubs, a 4-entity component of its own and 3 isolated
    entities, plus parallel triples and self-loops."""
    rng = np.random.default_rng(seed)
    main = n - 7  # entities 0..main-1
    island = np.arange(main, main + 4)  # a component of its own; the last 3 are isolated
    p = np.ones(main)
    p[:2] = main / 6  # two hubs
    p /= p.sum()
    h = rng.choice(main, m, p=p)
    t = rng.choice(main, m, p=p)
    rel = rng.integers(0, r, m)
    extra = []
    # parallel triples: one pair joined by every relation, in both directions
    a, b = (int(x) for x in rng.choice(main, 2, replace=False))
    extra += [(a, k, b) for k in range(r)] + [(b, 0, a)]
    # more pairs with two relations
    for x, y in rng.choice(main, (4, 2)):
        extra += [(int(x), 0, int(y)), (int(x), 1, int(y))]
    # self-loops, on a hub and on ordinary entities
    extra += [(0, 0, 0), (int(a), 2, int(a))] + [(int(x), int(rng.integers(r)), int(x)) for x in rng.choice(main, 2)]
    # the island: a path, a parallel pair and a self-loop
    i0, i1, i2, i3 = (int(x) for x in island)
    extra += [(i0, 0, i1), (i1, 1, i2), (i2, 0, i3), (i2, 2, i3), (i3, 1, i3)]
    trip = np.concatenate([np.stack([h, rel, t], 1), np.array(extra)])
    trip = np.unique(trip, axis=0)  # a snapshot holds no duplicate triple
    return trip, (a, b), main, n


def build(trip, n, r=3, seed=0):
    graph = CSRGraph.from_triples(trip[:, 0], trip[:, 1], trip[:, 2], n, r)
    index = SearchIndex.build(graph, seed=seed)
    g = nx.MultiGraph()
    g.add_nodes_from(range(n))
    for h, rel, t in trip:
        g.add_edge(int(h), int(t), key=(int(h), int(rel), int(t)))
    return graph, index, g


def questions(seed, pair, main, n):
    """(sources, targets) of single pairs and of small entity sets: random
    pairs, the parallel pair, pairs across components or with an isolated
    entity (no path), an entity with itself, and sets that overlap."""
    rng = np.random.default_rng(1000 + seed)
    qs = [([int(x)], [int(y)]) for x, y in rng.integers(0, main, (24, 2))]
    a, b = pair
    qs += [([a], [b]), ([b], [a]), ([0], [1])]
    qs += [([0], [main]), ([main + 1], [3]), ([n - 1], [n - 2]), ([main], [main + 3]), ([5], [5])]
    for _ in range(6):
        qs.append((list(map(int, rng.choice(n, rng.integers(1, 4), replace=False))),
                   list(map(int, rng.choice(n, rng.integers(1, 4), replace=False)))))
    qs.append(([2, 7, a], [7, b, main]))  # 7 on both sides
    return qs


def search(graph, index, qs, cfg):
    return find_paths(graph, index, [np.array(s) for s, _ in qs], [np.array(t) for _, t in qs], cfg)


def as_steps(graph, index, trip, pb, nq):
    """Per question, the list of its paths as tuples of (from, to, triple)."""
    nodes = pb.nodes(graph, index)
    off = pb.per_question(nq)
    out = []
    for q in range(nq):
        paths = []
        for p in range(off[q], off[q + 1]):
            steps = []
            for i in range(pb.hops[p]):
                row = trip[graph.triple[pb.edges[p, i]]]
                steps.append((int(nodes[p, i]), int(nodes[p, i + 1]), (int(row[0]), int(row[1]), int(row[2]))))
            paths.append(tuple(steps))
        out.append(paths)
    return out




@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_uncapped_search_finds_exactly_the_simple_paths_networkx_finds(seed, hops):
    trip, pair, main, n = random_multigraph(seed)
    graph, index, g = build(trip, n, seed=seed)
    qs = questions(seed, pair, main, n)
    pb = search(graph, index, qs, SearchConfig(max_hops=hops, seed=seed, **EXACT))
    mine = as_steps(graph, index, trip, pb, len(qs))
    empty = total = parallel = 0
    for q, (s, t) in enumerate(qs):
        assert len(mine[q]) == len(set(mine[q])), f"question {q}: a path was produced twice"
        ref = reference(g, s, t, hops)
        assert set(mine[q]) == ref, f"question {q} ({s} -> {t}, {hops} hops)"
        total += len(ref)
        empty += not ref
        # paths that differ only in the relation of a step: parallel edges are walked
        parallel += len(ref) > len({tuple((u, v) for u, v, _ in p) for p in ref})
    # the sample exercises what it claims to: paths, questions without one, parallel edges
    assert total >= (10 if hops == 1 else 100)
    assert empty >= 4
    assert parallel >= 1
    # no path uses a self-loop (a simple path never returns to a node)
    assert all(u != v for paths in mine for p in paths for u, v, _ in p)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fanout,max_paths,retry", [(1, 0, True), (2, 3, True), (3, 1, False), (0, 2, True), (4, 5, False)])
def test_capped_search_returns_a_subset_of_at_most_max_paths(seed, fanout, max_paths, retry):
    trip, pair, main, n = random_multigraph(seed)
    graph, index, _ = build(trip, n, seed=seed)
    qs = questions(seed, pair, main, n)
    full = as_steps(graph, index, trip, search(graph, index, qs, SearchConfig(max_hops=3, seed=seed, **EXACT)), len(qs))
    cfg = SearchConfig(max_hops=3, fanout=fanout, max_paths=max_paths, retry_uncapped=retry, seed=seed)
    pb = search(graph, index, qs, cfg)
    capped = as_steps(graph, index, trip, pb, len(qs))
    off = pb.per_question(len(qs))
    cut = 0
    for q in range(len(qs)):
        assert set(capped[q]) <= set(full[q]), f"question {q}: a capped path the uncapped search does not find"
        assert len(capped[q]) == len(set(capped[q]))
        if max_paths:
            assert len(capped[q]) <= max_paths
            if not full[q]:
                assert not capped[q]
            elif retry:
                assert capped[q]  # a question with a path keeps one: searched again without the fan-out cap
        costs = pb.cost[off[q]:off[q + 1]]
        assert np.all(np.diff(costs) >= 0)  # cheapest first
        cut += len(capped[q]) < len(full[q])
    assert cut >= 5  # the caps did bind
