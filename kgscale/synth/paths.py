"""Multi-hop path search between two entity sets over a :class:`CSRGraph`.

No Ray here: :func:`find_paths` takes a batch of questions (source entities S
and answer entities T each) and returns, per question, up to K simple paths
of at most H hops from some s in S to some t in T, walking edges both ways
(each step records whether it follows its triple head -> tail or against it).

How it stays fast on hub-heavy graphs:

- *Meet in the middle.* A path of L hops is split after its first
  ceil(L/2) hops. The short half (at most floor(H/2) hops) is materialised
  once from the side with the cheaper expansion and indexed by its end
  node; the long half is walked depth first from the other side and joined
  to it. Each path is produced exactly once.
- *Exact meeting step by intersection.* The last hop of the walk only has to
  land on a node where a materialised half ends. When a node has more edges
  than there are such nodes, the walk bisects its (neighbour-sorted) edge
  list for each of them instead of scanning it, so a hub in the middle costs
  ``|meet set| * log(degree)``, not its degree.
- *Fan-out caps.* An expansion (a node the search walks on from) follows at
  most ``fanout`` of its edges: the ones to the lowest-degree neighbours,
  ties broken by a seeded hash (:class:`SearchIndex`). The meeting step is
  an exact lookup and is never capped. A question the caps leave without
  any path is searched once more without them (``retry_uncapped``).
- *A preference for informative paths, A*-style.* A path costs
  ``hop_cost * hops + hub_weight * sum(log2 degree of its inner nodes)``,
  so a path through a hub is dearer than one through specific entities.
  The K cheapest paths are kept in a heap, and once it is full any partial
  path whose admissible lower bound already exceeds the K-th cost is
  pruned (branch and bound with an admissible heuristic, as in A*). The
  result is the exact K cheapest paths among those the caps allow, ties
  broken by a seeded hash of the path, so it is deterministic for a seed and
  independent of the order of the search.

With ``fanout=0`` and ``max_paths=0`` nothing is capped and the result is
every simple path, the same set as networkx's ``all_simple_edge_paths`` on
the undirected multigraph (tests/unit/test_paths_networkx.py).

The hot loop is compiled with numba: a pure-Python (or numpy-per-node)
search spends its time in interpreter overhead per edge and stays within a
small factor of networkx, far from the 100x this stage needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from pydantic import Field

from kgscale.config import StrictModel
from kgscale.kg.graph import CSRGraph

MAX_HOPS = 4


class SearchConfig(StrictModel):
    # longest path, in hops
    max_hops: int = Field(3, ge=1, le=MAX_HOPS)
    # paths kept per question, cheapest first; 0 keeps every path found
    max_paths: int = Field(16, ge=0)
    # edges an expansion follows per node (lowest-degree neighbours first); 0: no cap
    fanout: int = Field(64, ge=0)
    # cost of a hop, and weight of log2(degree) of each inner node (hubs are
    # uninformative); never negative, so a path's cost only grows as it extends
    hop_cost: float = Field(1.0, ge=0)
    hub_weight: float = Field(1.0, ge=0)
    # a question the caps leave with no path is searched once more without them
    retry_uncapped: bool = True
    # seeds the tie-breaks (which of equal-degree edges a cap keeps, which of equal-cost paths survive)
    seed: int = Field(0, ge=0)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class SearchIndex:
    """What the search needs beside the CSR arrays, built once per graph and
    seed on the driver and shipped with the graph (plain numpy, so the
    object store shares it zero-copy).

    - ``pref``: edge indices, each node's range reordered by (neighbour
      degree, seeded hash): the first ``fanout`` entries are what a capped
      expansion follows.
    - ``twin``: the edge walking the same triple the other way.
    - ``node_cost``: log2(degree), the price of passing through a node.
    """

    pref: np.ndarray  # int64 [E]
    twin: np.ndarray  # int64 [E]
    node_cost: np.ndarray  # float64 [N]
    seed: int

    @classmethod
    def build(cls, graph: CSRGraph, seed: int = 0) -> "SearchIndex":
        deg = graph.degree()
        e = graph.num_edges
        src = np.repeat(np.arange(graph.num_entities, dtype=np.int64), deg)
        with np.errstate(over="ignore"):
            salt = _mix64(np.arange(e, dtype=np.uint64) ^ _mix64(np.array([seed], dtype=np.uint64))[0])
        pref = np.lexsort((salt, deg[graph.neighbor], src)).astype(np.int64)
        # every triple gives exactly two edges: forward and inverse
        by_triple = np.lexsort((graph.inverse, graph.triple))
        twin = np.empty(e, dtype=np.int64)
        twin[by_triple[0::2]] = by_triple[1::2]
        twin[by_triple[1::2]] = by_triple[0::2]
        node_cost = np.log2(np.maximum(deg, 1)).astype(np.float64)
        return cls(pref=pref, twin=twin, node_cost=node_cost, seed=int(seed))

    def nbytes(self) -> int:
        return self.pref.nbytes + self.twin.nbytes + self.node_cost.nbytes


@dataclass
class PathBatch:
    """Paths of a batch of questions, flat, sorted by (question, cost, tie hash).

    ``edges[p, :hops[p]]`` are CSR edge indices (the rest -1): step i walks
    from ``nodes[p, i]`` to ``nodes[p, i + 1]`` over ``relation[edge]``,
    against the triple's direction when ``inverse[edge]``.
    """

    question: np.ndarray  # int64 [P] index of the question in the batch
    hops: np.ndarray  # int64 [P]
    cost: np.ndarray  # float64 [P]
    edges: np.ndarray  # int64 [P, max_hops]
    # per question: [edges examined, paths found before the top-K cut,
    # searched from the answer side, searched again without caps]
    stats: np.ndarray  # int64 [Q, 4]

    def nodes(self, graph: CSRGraph, index: SearchIndex) -> np.ndarray:
        """Entity ids along each path, [P, max_hops + 1], -1 past its end."""
        p, h = self.edges.shape
        out = np.full((p, h + 1), -1, dtype=np.int64)
        if p == 0:
            return out
        first = self.edges[:, 0]
        out[:, 0] = graph.neighbor[index.twin[first]]  # the source of the first edge
        valid = self.edges >= 0
        out[:, 1:][valid] = graph.neighbor[self.edges[valid]]
        return out

    def per_question(self, num_questions: int) -> np.ndarray:
        """Offsets: the paths of question q are ``[off[q], off[q + 1])``."""
        off = np.zeros(num_questions + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.question, minlength=num_questions), out=off[1:])
        return off


def find_paths(
    graph: CSRGraph,
    index: SearchIndex,
    sources: list[np.ndarray],
    targets: list[np.ndarray],
    cfg: SearchConfig,
) -> PathBatch:
    """Paths for each question q from ``sources[q]`` to ``targets[q]`` (entity ids)."""
    if len(sources) != len(targets):
        raise ValueError("sources and targets must have one entry per question")
    pb = _search(graph, index, sources, targets, cfg, cfg.fanout)
    stats = np.concatenate([pb.stats, np.zeros((len(sources), 1), np.int64)], axis=1)
    if cfg.fanout > 0 and cfg.retry_uncapped:
        # the caps bound the work on hubs; a question they leave with no path at
        # all is searched once more without them
        has = np.bincount(pb.question, minlength=len(sources)) > 0
        again = [q for q in range(len(sources)) if not has[q] and len(sources[q]) and len(targets[q])]
        if again:
            pb2 = _search(graph, index, [sources[q] for q in again], [targets[q] for q in again], cfg, 0)
            ids = np.asarray(again, dtype=np.int64)
            stats[ids, 0] += pb2.stats[:, 0]
            stats[ids, 1] = pb2.stats[:, 1]
            stats[ids, 3] = 1
            q = np.concatenate([pb.question, ids[pb2.question]])
            order = np.argsort(q, kind="stable")  # keeps each question's cost order
            pb = PathBatch(question=q[order], hops=np.concatenate([pb.hops, pb2.hops])[order],
                           cost=np.concatenate([pb.cost, pb2.cost])[order],
                           edges=np.concatenate([pb.edges, pb2.edges])[order], stats=stats)
    pb.stats = stats
    return pb


def _search(graph, index, sources, targets, cfg: SearchConfig, fanout: int) -> PathBatch:
    src_ptr, src = _pack(sources, graph.num_entities)
    tgt_ptr, tgt = _pack(targets, graph.num_entities)
    q, hops, cost, hsh, edges, stats = _mine_batch(
        graph.indptr,
        graph.neighbor,
        index.pref,
        index.twin,
        index.node_cost,
        src_ptr,
        src,
        tgt_ptr,
        tgt,
        cfg.max_hops,
        cfg.max_paths,
        fanout,
        float(cfg.hop_cost),
        float(cfg.hub_weight),
        np.uint64(cfg.seed & 0xFFFFFFFFFFFFFFFF),
    )
    # already in (question, cost, tie hash) order
    return PathBatch(question=q, hops=hops, cost=cost, edges=edges, stats=stats)


def _pack(groups: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ids per question, concatenated, with offsets."""
    uniq = [np.unique(np.asarray(g, dtype=np.int64)) for g in groups]
    for u in uniq:
        if len(u) and (u[0] < 0 or u[-1] >= n):
            raise ValueError(f"entity id out of range [0, {n})")
    ptr = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum([len(u) for u in uniq], out=ptr[1:])
    flat = np.concatenate(uniq) if uniq else np.zeros(0, np.int64)
    return ptr, flat.astype(np.int64)


# --------------------------------------------------------------------------
# compiled core
# --------------------------------------------------------------------------

_U30 = np.uint64(30)
_U27 = np.uint64(27)
_U31 = np.uint64(31)
_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def _mix(x):
    x = x + _G
    x = (x ^ (x >> _U30)) * _M1
    x = (x ^ (x >> _U27)) * _M2
    return x ^ (x >> _U31)


@numba.njit(cache=True)
def _expand_cost(indptr, neighbor, pref, fanout, nodes, depth):
    """Rough work of walking ``depth`` (1 or 2) hops from ``nodes`` with caps."""
    if depth <= 0:
        return len(nodes)
    total = 0
    for n in nodes:
        a, b = indptr[n], indptr[n + 1]
        if fanout > 0 and b - a > fanout:
            b = a + fanout
        if depth <= 1:
            total += b - a
        else:
            for p in range(a, b):
                v = neighbor[pref[p]]
                total += indptr[v + 1] - indptr[v]
    return total


@numba.njit(cache=True)
def _lower_bound(arr, lo, hi, x):
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _heap_less(ca, ha, cb, hb):
    return ca < cb or (ca == cb and ha < hb)


@numba.njit(cache=True)
def _sift_down(heap, n, cost, hsh):
    # max-heap on (cost, hash) over slot indices
    i = 0
    while True:
        l = 2 * i + 1
        if l >= n:
            break
        c = l
        r = l + 1
        if r < n and _heap_less(cost[heap[l]], hsh[heap[l]], cost[heap[r]], hsh[heap[r]]):
            c = r
        if _heap_less(cost[heap[i]], hsh[heap[i]], cost[heap[c]], hsh[heap[c]]):
            heap[i], heap[c] = heap[c], heap[i]
            i = c
        else:
            break


@numba.njit(cache=True)
def _sift_up(heap, i, cost, hsh):
    while i > 0:
        p = (i - 1) >> 1
        if _heap_less(cost[heap[p]], hsh[heap[p]], cost[heap[i]], hsh[heap[i]]):
            heap[i], heap[p] = heap[p], heap[i]
            i = p
        else:
            break


@numba.njit(cache=True)
def _mine_batch(indptr, neighbor, pref, twin, node_cost, src_ptr, src, tgt_ptr, tgt,
                max_hops, max_paths, fanout, hop_cost, hub_weight, seed):
    n_nodes = len(indptr) - 1
    H = max_hops
    da = (H + 1) // 2  # hops of the walked half
    db = H // 2  # hops of the materialised half
    nq = len(src_ptr) - 1

    # which materialised depths j can meet the walk at its depth i: the split
    # after ceil(L/2) hops means j in {i - 1, i}, and i + j <= H
    allowed = np.zeros(da + 1, np.int64)
    for i in range(1, da + 1):
        for j in range(i - 1, i + 1):
            if j <= db and i + j <= H:
                allowed[i] |= 1 << j

    onpath = np.zeros(n_nodes, np.uint8)
    bmask = np.zeros(n_nodes, np.uint8)
    bhead = np.full(n_nodes * (db + 1), -1, np.int64)

    # output, grown by doubling
    o_cap = 1024
    o_q = np.empty(o_cap, np.int64)
    o_hops = np.empty(o_cap, np.int64)
    o_cost = np.empty(o_cap, np.float64)
    o_hash = np.empty(o_cap, np.uint64)
    o_edges = np.full((o_cap, H), -1, np.int64)
    n_out = 0
    stats = np.zeros((nq, 3), np.int64)

    seed_h = _mix(seed)
    path_buf = np.empty(H, np.int64)
    walk_nodes = np.empty(da + 1, np.int64)
    walk_edges = np.empty(da + 1, np.int64)
    walk_pos = np.empty(da + 1, np.int64)
    walk_lim = np.empty(da + 1, np.int64)
    walk_g = np.empty(da + 1, np.float64)

    for q in range(nq):
        S = src[src_ptr[q]:src_ptr[q + 1]]
        T = tgt[tgt_ptr[q]:tgt_ptr[q + 1]]
        if len(S) == 0 or len(T) == 0:
            continue
        # walk from the side whose expansion is cheaper, materialise the other
        cost_st = _expand_cost(indptr, neighbor, pref, fanout, S, da) + _expand_cost(indptr, neighbor, pref, fanout, T, db)
        cost_ts = _expand_cost(indptr, neighbor, pref, fanout, T, da) + _expand_cost(indptr, neighbor, pref, fanout, S, db)
        swapped = cost_ts < cost_st
        if swapped:
            A = T
            B = S
        else:
            A = S
            B = T
        stats[q, 2] = 1 if swapped else 0
        work = 0

        # ---- materialise the short half from B, level by level --------------
        nb = len(B)
        level_lo = 0
        level_hi = nb
        # upper bound of partials: count per level before filling it
        b_cap = nb
        b_node = np.empty(b_cap, np.int64)
        b_parent = np.empty(b_cap, np.int64)
        b_edge = np.empty(b_cap, np.int64)
        b_depth = np.empty(b_cap, np.int64)
        b_cost = np.empty(b_cap, np.float64)
        for k in range(nb):
            b_node[k] = B[k]
            b_parent[k] = -1
            b_edge[k] = -1
            b_depth[k] = 0
            b_cost[k] = 0.0
        nbp = nb
        for d in range(1, db + 1):
            need = 0
            for k in range(level_lo, level_hi):
                u = b_node[k]
                deg = indptr[u + 1] - indptr[u]
                need += min(deg, fanout) if fanout > 0 else deg
            if nbp + need > b_cap:
                new_cap = nbp + need
                b_node = np.concatenate((b_node[:nbp], np.empty(new_cap - nbp, np.int64)))
                b_parent = np.concatenate((b_parent[:nbp], np.empty(new_cap - nbp, np.int64)))
                b_edge = np.concatenate((b_edge[:nbp], np.empty(new_cap - nbp, np.int64)))
                b_depth = np.concatenate((b_depth[:nbp], np.empty(new_cap - nbp, np.int64)))
                b_cost = np.concatenate((b_cost[:nbp], np.empty(new_cap - nbp, np.float64)))
                b_cap = new_cap
            for k in range(level_lo, level_hi):
                u = b_node[k]
                a = indptr[u]
                z = indptr[u + 1]
                if fanout > 0 and z - a > fanout:
                    z = a + fanout
                inner = b_cost[k] + (node_cost[u] if d > 1 else 0.0)
                for p in range(a, z):
                    e = pref[p]
                    v = neighbor[e]
                    work += 1
                    # simple: v is not on the chain back to B
                    ok = True
                    kk = k
                    while kk >= 0:
                        if b_node[kk] == v:
                            ok = False
                            break
                        kk = b_parent[kk]
                    if not ok:
                        continue
                    b_node[nbp] = v
                    b_parent[nbp] = k
                    b_edge[nbp] = e
                    b_depth[nbp] = d
                    b_cost[nbp] = inner
                    nbp += 1
            level_lo = level_hi
            level_hi = nbp
        # index the partials by (end node, depth)
        b_next = np.empty(nbp, np.int64)
        for k in range(nbp):
            v = b_node[k]
            key = v * (db + 1) + b_depth[k]
            b_next[k] = bhead[key]
            bhead[key] = k
            bmask[v] |= np.uint8(1 << b_depth[k])
        # meet sets: sorted distinct end nodes usable at walk depth i
        meet_ptr = np.zeros(da + 2, np.int64)
        tmp_all = np.empty(0, np.int64)
        for i in range(1, da + 1):
            sel = np.empty(nbp, np.int64)
            m = 0
            for k in range(nbp):
                if (allowed[i] >> b_depth[k]) & 1:
                    sel[m] = b_node[k]
                    m += 1
            u_sel = np.unique(sel[:m])
            tmp_all = np.concatenate((tmp_all, u_sel))
            meet_ptr[i + 1] = meet_ptr[i] + len(u_sel)
        meet = tmp_all

        # ---- top-K buffer of this question ---------------------------------
        k_cap = max_paths if max_paths > 0 else 64
        t_cost = np.empty(k_cap, np.float64)
        t_hash = np.empty(k_cap, np.uint64)
        t_hops = np.empty(k_cap, np.int64)
        t_edges = np.full((k_cap, H), -1, np.int64)
        heap = np.empty(k_cap, np.int64)
        n_t = 0
        found = 0

        # ---- walk the long half from A, depth first -----------------------
        for s in A:
            walk_nodes[0] = s
            walk_g[0] = 0.0
            onpath[s] = 1
            depth = 0
            entering = True
            while depth >= 0:
                u = walk_nodes[depth]
                if entering:
                    entering = False
                    # meeting step at walk depth i = depth + 1 (exact, never capped)
                    i = depth + 1
                    mask = allowed[i]
                    a = indptr[u]
                    z = indptr[u + 1]
                    m_lo = meet_ptr[i]
                    m_hi = meet_ptr[i + 1]
                    n_meet = m_hi - m_lo
                    deg = z - a
                    # scan the edges, or bisect them per meet node when that is cheaper
                    intersect = n_meet * (np.log2(deg + 1.0) + 2.0) < deg
                    mi = m_lo
                    p = a
                    while True:
                        if intersect:
                            if mi >= m_hi:
                                break
                            target = meet[mi]
                            mi += 1
                            p = _lower_bound(neighbor, a, z, target)
                            work += 1
                            p_end = p
                            while p_end < z and neighbor[p_end] == target:
                                p_end += 1
                        else:
                            if p >= z:
                                break
                            p_end = p + 1
                        for e in range(p, p_end):
                            v = neighbor[e]
                            if not intersect:
                                work += 1
                            if onpath[v] or not (bmask[v] & mask):
                                continue
                            for j in range(0, db + 1):
                                if not ((mask >> j) & 1) or not ((bmask[v] >> j) & 1):
                                    continue
                                k = bhead[v * (db + 1) + j]
                                while k >= 0:
                                    # the materialised half must not cross the walk
                                    ok = True
                                    kk = b_parent[k]
                                    while kk >= 0:
                                        if onpath[b_node[kk]]:
                                            ok = False
                                            break
                                        kk = b_parent[kk]
                                    if ok:
                                        L = i + j
                                        c = hop_cost * L + hub_weight * (walk_g[depth] + (node_cost[v] if j > 0 else 0.0) + b_cost[k])
                                        # assemble the path in walk order
                                        for x in range(depth):
                                            path_buf[x] = walk_edges[x]
                                        path_buf[depth] = e
                                        x = depth + 1
                                        kk = k
                                        while b_depth[kk] > 0:
                                            path_buf[x] = twin[b_edge[kk]]
                                            x += 1
                                            kk = b_parent[kk]
                                        if swapped:
                                            # reverse: walk T -> S becomes S -> T
                                            for y in range(L // 2):
                                                tmp = path_buf[y]
                                                path_buf[y] = path_buf[L - 1 - y]
                                                path_buf[L - 1 - y] = tmp
                                            for y in range(L):
                                                path_buf[y] = twin[path_buf[y]]
                                        h = seed_h
                                        for y in range(L):
                                            h = _mix(h ^ np.uint64(path_buf[y]))
                                        found += 1
                                        # mode 0: drop, 1: append, 2: append + sift up, 3: replace the worst + sift down
                                        mode = 0
                                        if max_paths <= 0:
                                            if n_t == k_cap:
                                                k_cap *= 2
                                                t_cost = np.concatenate((t_cost, np.empty(n_t, np.float64)))
                                                t_hash = np.concatenate((t_hash, np.empty(n_t, np.uint64)))
                                                t_hops = np.concatenate((t_hops, np.empty(n_t, np.int64)))
                                                t_edges = np.concatenate((t_edges, np.full((n_t, H), -1, np.int64)))
                                            slot = n_t
                                            mode = 1
                                        elif n_t < max_paths:
                                            slot = n_t
                                            mode = 2
                                        elif _heap_less(c, h, t_cost[heap[0]], t_hash[heap[0]]):
                                            slot = heap[0]
                                            mode = 3
                                        else:
                                            slot = -1
                                        if mode > 0:
                                            t_cost[slot] = c
                                            t_hash[slot] = h
                                            t_hops[slot] = L
                                            for y in range(H):
                                                t_edges[slot, y] = path_buf[y] if y < L else -1
                                        if mode == 1:
                                            n_t += 1
                                        elif mode == 2:
                                            heap[n_t] = slot
                                            n_t += 1
                                            _sift_up(heap, n_t - 1, t_cost, t_hash)
                                        elif mode == 3:
                                            _sift_down(heap, n_t, t_cost, t_hash)
                                    k = b_next[k]
                        if not intersect:
                            p = p_end
                    # children of u (walk on), capped; skip when the walk is at full length
                    if depth + 1 < da:
                        walk_pos[depth] = a
                        lim = z
                        if fanout > 0 and z - a > fanout:
                            lim = a + fanout
                        walk_lim[depth] = lim
                    else:
                        walk_pos[depth] = 0
                        walk_lim[depth] = 0
                # next child of u
                if walk_pos[depth] < walk_lim[depth]:
                    e = pref[walk_pos[depth]]
                    walk_pos[depth] += 1
                    v = neighbor[e]
                    work += 1
                    if onpath[v]:
                        continue
                    g = walk_g[depth] + node_cost[v]
                    if max_paths > 0 and n_t == max_paths:
                        # every path through v has v inside and at least depth + 2 hops
                        if hop_cost * (depth + 2) + hub_weight * g > t_cost[heap[0]]:
                            continue
                    walk_edges[depth] = e
                    depth += 1
                    walk_nodes[depth] = v
                    walk_g[depth] = g
                    onpath[v] = 1
                    entering = True
                else:
                    onpath[u] = 0
                    depth -= 1

        # ---- reset the workspace, append this question's paths -------------
        for k in range(nbp):
            v = b_node[k]
            bhead[v * (db + 1) + b_depth[k]] = -1
            bmask[v] = 0
        if n_out + n_t > o_cap:
            new_cap = max(o_cap * 2, n_out + n_t)
            o_q = np.concatenate((o_q[:n_out], np.empty(new_cap - n_out, np.int64)))
            o_hops = np.concatenate((o_hops[:n_out], np.empty(new_cap - n_out, np.int64)))
            o_cost = np.concatenate((o_cost[:n_out], np.empty(new_cap - n_out, np.float64)))
            o_hash = np.concatenate((o_hash[:n_out], np.empty(new_cap - n_out, np.uint64)))
            o_edges = np.concatenate((o_edges[:n_out], np.full((new_cap - n_out, H), -1, np.int64)))
            o_cap = new_cap
        # cheapest first, ties by hash: a stable sort by cost of the hash-sorted paths
        by_hash = np.argsort(t_hash[:n_t])
        order = by_hash[np.argsort(t_cost[:n_t][by_hash], kind="mergesort")]
        for x in order:
            o_q[n_out] = q
            o_hops[n_out] = t_hops[x]
            o_cost[n_out] = t_cost[x]
            o_hash[n_out] = t_hash[x]
            for y in range(H):
                o_edges[n_out, y] = t_edges[x, y]
            n_out += 1
        stats[q, 0] = work
        stats[q, 1] = found
    return o_q[:n_out], o_hops[:n_out], o_cost[:n_out], o_hash[:n_out], o_edges[:n_out], stats
