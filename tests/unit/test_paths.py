"""The path search core against networkx and against its own contract."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from kgscale.kg.graph import CSRGraph
from kgscale.synth.paths import SearchConfig, SearchIndex, find_paths

EXACT = dict(max_paths=0, fanout=0)


def random_graph(n=60, m=200, r=4, seed=0, hubs=2):
    """A multigraph with hubs, parallel edges and self-loops."""
    rng = np.random.default_rng(seed)
    # a few hubs take a large share of the edge ends
    p = np.ones(n)
    p[:hubs] = n / 4
    p /= p.sum()
    h = rng.choice(n, m, p=p)
    t = rng.choice(n, m, p=p)
    rel = rng.integers(0, r, m)
    # parallel edges and a self-loop
    h = np.concatenate([h, [5, 5, 7]])
    t = np.concatenate([t, [6, 6, 7]])
    rel = np.concatenate([rel, [0, 1, 2]])
    # drop exact duplicate triples (a snapshot holds none)
    trip = np.unique(np.stack([h, rel, t], 1), axis=0)
    return CSRGraph.from_triples(trip[:, 0], trip[:, 1], trip[:, 2], n, r), trip


def nx_graph(trip, n):
    g = nx.MultiGraph()
    g.add_nodes_from(range(n))
    for i, (h, _, t) in enumerate(trip):
        g.add_edge(int(h), int(t), key=i)
    return g


def as_edge_paths(graph, index, pb, q):
    """The paths of question q as tuples of (from, to, triple row), like networkx's."""
    nodes = pb.nodes(graph, index)
    off = pb.per_question(len(pb.stats))
    out = []
    for p in range(off[q], off[q + 1]):
        out.append(tuple((int(nodes[p, i]), int(nodes[p, i + 1]), int(graph.triple[pb.edges[p, i]])) for i in range(pb.hops[p])))
    return out


def reference(g, sources, targets, hops):
    ref = set()
    for s in sources:
        for t in targets:
            if s != t:
                ref |= {tuple(p) for p in nx.all_simple_edge_paths(g, s, t, cutoff=hops)}
    return ref


@pytest.mark.parametrize("hops", [1, 2, 3, 4])
def test_same_path_sets_as_networkx_without_caps(hops):
    graph, trip = random_graph(seed=hops)
    index = SearchIndex.build(graph, seed=0)
    g = nx_graph(trip, graph.num_entities)
    rng = np.random.default_rng(100 + hops)
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, graph.num_entities, (25, 2))] + [(0, 1), (5, 6), (7, 8)]
    pb = find_paths(graph, index, [np.array([a]) for a, _ in pairs], [np.array([b]) for _, b in pairs],
                    SearchConfig(max_hops=hops, **EXACT))
    total = 0
    for q, (a, b) in enumerate(pairs):
        mine = as_edge_paths(graph, index, pb, q)
        assert len(mine) == len(set(mine)), "a path was produced twice"
        ref = reference(g, [a], [b], hops)
        assert set(mine) == ref, (a, b)
        total += len(ref)
    assert total > (5 if hops == 1 else 50)  # the sample has paths to compare


def test_entity_sets_give_the_union_over_pairs():
    graph, trip = random_graph(seed=11)
    index = SearchIndex.build(graph)
    g = nx_graph(trip, graph.num_entities)
    S, T = [3, 9, 20], [4, 9, 31, 40]  # 9 is in both
    pb = find_paths(graph, index, [np.array(S + [20, 3])], [np.array(T + [4])], SearchConfig(max_hops=3, **EXACT))
    mine = as_edge_paths(graph, index, pb, 0)
    assert len(mine) == len(set(mine))
    assert set(mine) == reference(g, S, T, 3)


def test_direction_of_each_step_is_recorded():
    # (0, r0, 1) and (2, r1, 1): 0 -> 1 follows a triple, 1 -> 2 walks one backwards
    graph = CSRGraph.from_triples(np.array([0, 2]), np.array([0, 1]), np.array([1, 1]), 3, 2)
    index = SearchIndex.build(graph)
    pb = find_paths(graph, index, [np.array([0])], [np.array([2])], SearchConfig())
    assert pb.hops.tolist() == [2]
    e = pb.edges[0, :2]
    assert pb.nodes(graph, index)[0, :3].tolist() == [0, 1, 2]
    assert graph.relation[e].tolist() == [0, 1]
    assert graph.inverse[e].tolist() == [False, True]


def path_cost(graph, nodes, hops, cfg):
    deg = graph.degree()
    inner = nodes[1:hops]
    return cfg.hop_cost * hops + cfg.hub_weight * sum(math.log2(max(deg[v], 1)) for v in inner)


def test_top_k_is_the_k_cheapest_of_all_paths():
    graph, _ = random_graph(n=80, m=400, seed=3)
    index = SearchIndex.build(graph)
    rng = np.random.default_rng(5)
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, 80, (20, 2)) if a != b]
    S = [np.array([a]) for a, _ in pairs]
    T = [np.array([b]) for _, b in pairs]
    full = find_paths(graph, index, S, T, SearchConfig(**EXACT))
    top = find_paths(graph, index, S, T, SearchConfig(max_paths=5, fanout=0))
    fo, to = full.per_question(len(pairs)), top.per_question(len(pairs))
    nodes = top.nodes(graph, index)
    checked = 0
    for q in range(len(pairs)):
        all_costs = np.sort(full.cost[fo[q]:fo[q + 1]])
        got = top.cost[to[q]:to[q + 1]]
        assert len(got) == min(5, len(all_costs))
        np.testing.assert_allclose(got, all_costs[: len(got)])  # sorted, and the cheapest
        assert set(map(tuple, top.edges[to[q]:to[q + 1]])) <= set(map(tuple, full.edges[fo[q]:fo[q + 1]]))
        for p in range(to[q], to[q + 1]):
            assert top.cost[p] == pytest.approx(path_cost(graph, nodes[p], top.hops[p], SearchConfig()))
        checked += len(all_costs) > 5
    assert checked >= 5  # the cut did bind


def test_paths_through_hubs_are_dearer():
    # 0 - 1 - 9 through a specific node, 0 - 2 - 9 through a hub with 50 more edges
    h = [0, 1, 0, 2] + [2] * 50
    t = [1, 9, 2, 9] + list(range(10, 60))
    graph = CSRGraph.from_triples(np.array(h), np.zeros(len(h), int), np.array(t), 60, 1)
    index = SearchIndex.build(graph)
    pb = find_paths(graph, index, [np.array([0])], [np.array([9])], SearchConfig(max_paths=1))
    assert pb.nodes(graph, index)[0, :3].tolist() == [0, 1, 9]
    uncosted = find_paths(graph, index, [np.array([0])], [np.array([9])], SearchConfig(max_paths=2, hub_weight=0))
    assert np.all(uncosted.cost == 2.0)


def many_equal_paths(width=30):
    # 0 - i - 1 for i in 2..width+1: every path costs the same
    mids = np.arange(2, width + 2)
    h = np.concatenate([np.zeros(width, int), mids])
    t = np.concatenate([mids, np.ones(width, int)])
    return CSRGraph.from_triples(h, np.zeros(2 * width, int), t, width + 2, 1)


def test_deterministic_for_a_seed_and_seed_breaks_ties():
    graph = many_equal_paths()
    picks = {}
    for seed in (0, 0, 1, 2, 3):
        index = SearchIndex.build(graph, seed=seed)
        pb = find_paths(graph, index, [np.array([0])], [np.array([1])], SearchConfig(max_paths=3, seed=seed))
        got = tuple(map(tuple, pb.edges.tolist()))
        assert picks.setdefault(seed, got) == got  # same seed, same paths
    assert len(set(picks.values())) > 1  # the seed decides among equal-cost paths


def test_fanout_cap_limits_expansions_but_not_the_meeting_step():
    graph = many_equal_paths(width=30)
    index = SearchIndex.build(graph)
    capped = find_paths(graph, index, [np.array([0])], [np.array([1])], SearchConfig(max_paths=0, fanout=4))
    # the materialised side expands 4 of 30 edges; the walk meets each of them exactly
    assert len(capped.hops) == 4
    # the first hop of a direct edge is a meeting step: never lost to the cap
    h = np.concatenate([[0], np.zeros(30, int)])
    t = np.concatenate([[1], np.arange(2, 32)])
    star = CSRGraph.from_triples(h, np.zeros(31, int), t, 32, 1)
    pb = find_paths(star, SearchIndex.build(star), [np.array([0])], [np.array([1])], SearchConfig(fanout=1))
    assert pb.hops.tolist() == [1]


def test_no_sources_or_targets_gives_no_paths_and_validates_ids():
    graph = many_equal_paths(4)
    index = SearchIndex.build(graph)
    pb = find_paths(graph, index, [np.array([], int), np.array([0])], [np.array([1]), np.array([], int)], SearchConfig())
    assert len(pb.hops) == 0 and pb.stats.shape == (2, 4)
    with pytest.raises(ValueError, match="out of range"):
        find_paths(graph, index, [np.array([99])], [np.array([1])], SearchConfig())


def test_config_is_validated():
    with pytest.raises(ValueError, match="max_hops"):  # pydantic errors are ValueErrors
        SearchConfig(max_hops=5)
    with pytest.raises(ValueError):
        SearchConfig(fanout=-1)


def test_a_question_the_caps_leave_without_a_path_is_searched_again_without_them():
    # s=0 - a=1 - b=2 - t=3, and 10 dead-end leaves on each of s and t: a cap
    # of 2 keeps the leaves (lowest degree first) and loses the only path
    h = [0, 1, 2] + [0] * 10 + [3] * 10
    t = [1, 2, 3] + list(range(4, 14)) + list(range(14, 24))
    graph = CSRGraph.from_triples(np.array(h), np.zeros(len(h), int), np.array(t), 24, 1)
    index = SearchIndex.build(graph)
    strict = find_paths(graph, index, [np.array([0])], [np.array([3])], SearchConfig(fanout=2, retry_uncapped=False))
    assert len(strict.hops) == 0 and strict.stats[0, 3] == 0
    pb = find_paths(graph, index, [np.array([0]), np.array([0])], [np.array([3]), np.array([1])], SearchConfig(fanout=2))
    assert pb.question.tolist() == [0, 1]  # still grouped by question
    assert pb.nodes(graph, index)[0].tolist() == [0, 1, 2, 3]
    assert pb.stats[:, 3].tolist() == [1, 0]  # only the question without a path was searched again
