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
    return find_paths_packed(graph, index, *pack(sources), *pack(targets), cfg)


def find_paths_packed(graph: CSRGraph, index: SearchIndex, src_ptr: np.ndarray, src: np.ndarray,
                      tgt_ptr: np.ndarray, tgt: np.ndarray, cfg: SearchConfig) -> PathBatch:
    """:func:`find_paths` with each side given as offsets + concatenated ids
    (question q's sources are ``src[src_ptr[q]:src_ptr[q + 1]]``), as an Arrow
    list column holds them: no Python object per question."""
    nq = len(src_ptr) - 1
    if len(tgt_ptr) - 1 != nq:
        raise ValueError("sources and targets must have one entry per question")
    src_ptr, src = _dedup(src_ptr, src, graph.num_entities)
    tgt_ptr, tgt = _dedup(tgt_ptr, tgt, graph.num_entities)
    pb = _search(graph, index, src_ptr, src, tgt_ptr, tgt, cfg, cfg.fanout)
    stats = np.concatenate([pb.stats, np.zeros((nq, 1), np.int64)], axis=1)
    if cfg.fanout > 0 and cfg.retry_uncapped:
        # the caps bound the work on hubs; a question they leave with no path at
        # all is searched once more without them
        has = np.bincount(pb.question, minlength=nq) > 0
        again = np.flatnonzero(~has & (np.diff(src_ptr) > 0) & (np.diff(tgt_ptr) > 0))
        if len(again):
            sp, sf = pack([src[src_ptr[q]:src_ptr[q + 1]] for q in again])
            tp, tf = pack([tgt[tgt_ptr[q]:tgt_ptr[q + 1]] for q in again])
            pb2 = _search(graph, index, sp, sf, tp, tf, cfg, 0)
            stats[again, 0] += pb2.stats[:, 0]
            stats[again, 1] = pb2.stats[:, 1]
            stats[again, 3] = 1
            q = np.concatenate([pb.question, again[pb2.question]])
            order = np.argsort(q, kind="stable")  # keeps each question's cost order
            pb = PathBatch(question=q[order], hops=np.concatenate([pb.hops, pb2.hops])[order],
                           cost=np.concatenate([pb.cost, pb2.cost])[order],
                           edges=np.concatenate([pb.edges, pb2.edges])[order], stats=stats)
    pb.stats = stats
    return pb


def pack(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and concatenated ids of a list of id arrays."""
    ptr = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(g) for g in groups], out=ptr[1:])
    flat = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]) if len(groups) else np.zeros(0, np.int64)
    return ptr, flat.astype(np.int64)


def _dedup(ptr: np.ndarray, flat: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ids per question, checked against [0, n), vectorised."""
    flat = np.asarray(flat, dtype=np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= n):
        raise ValueError(f"entity id out of range [0, {n})")
    group = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    order = np.lexsort((flat, group))
    f, g = flat[order], group[order]
    keep = np.ones(len(f), dtype=bool)
    keep[1:] = (f[1:] != f[:-1]) | (g[1:] != g[:-1])
    out = np.zeros(len(ptr), dtype=np.int64)
    np.cumsum(np.bincount(g[keep], minlength=len(ptr) - 1), out=out[1:])
    return out, f[keep]


def _search(graph, index, src_ptr, src, tgt_ptr, tgt, cfg: SearchConfig, fanout: int) -> PathBatch:
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


# --------------------------------------------------------------------------
# compiled core
#
# _mine_batch searches the questions one after another (_search_question) and
# gathers their paths (_append_paths). One question: pick the side to walk
# (_walk_targets_first), materialise the short half from the other side
# level by level (_materialise_half, _expand_level), index it by end node
# (_index_half, _meet_sets), then walk the long half depth first from each
# node of the walked side (_walk_from, _walk). At each node it enters, the
# walk takes the meeting step: it lists the edges onto nodes where partials
# it may join end (_meet_candidates) and joins them (_join_halves); each path
# so made is assembled, priced and hashed (_assemble_path, _path_hash) and
# offered to the top-K buffer (_keep_path).
#
# Arrays travel in a few tuples, unpacked by name where they are used:
#   graph  = (indptr, neighbor, pref, twin, node_cost)
#   half   = (b_node, b_parent, b_edge, b_depth, b_cost, b_next, b_len, bhead, bmask):
#            the materialised partial paths, a forest rooted in B (partial k
#            ends at b_node[k], entered over b_edge[k] from partial
#            b_parent[k], after b_depth[k] hops and inner-node cost
#            b_cost[k]), and their index: per (end node, depth) a list from
#            bhead linked by b_next (b_len: the list's length from k on), per
#            node a bit mask of the depths ending there (bhead and bmask are
#            reset after each question)
#   walk   = (walk_nodes, walk_edges, walk_pos, walk_lim, walk_g, onpath, path_buf):
#            the depth-first walk's stack, its nodes flagged, and the path
#            being assembled
#   top    = (t_cost, t_hash, t_hops, t_edges, heap) holding n_t paths: every
#            path found when max_paths is 0 (the buffer at least doubles when it
#            grows), else the K cheapest, their slots a max-heap of (cost, hash)
#            in heap
#   out    = (o_q, o_hops, o_cost, o_hash, o_edges) holding n_out paths
#   search = (max_paths, hop_cost, hub_weight, seed_h)
#
# Speed: numba counts references to an array atomically each time one is
# passed to a function, returned or unpacked, and in the hot loops that would
# cost as much as the search itself. So the loops that run per edge or per
# path (_walk, _expand_level, _level_size) are compiled without the numba
# runtime (``_nrt=False``, as numba compiles its own sort and string kernels:
# no reference counting, no allocation) and the helpers they call are inlined
# into them (``inline="always"``), which compiles to the same code as one
# function. They allocate nothing: the buffers they fill are grown by their
# callers (_materialise_half, _walk_from).
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


@numba.njit(cache=True, inline="always")
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


@numba.njit(cache=True, inline="always")
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


@numba.njit(cache=True, inline="always")
def _sift_up(heap, i, cost, hsh):
    while i > 0:
        p = (i - 1) >> 1
        if _heap_less(cost[heap[p]], hsh[heap[p]], cost[heap[i]], hsh[heap[i]]):
            heap[i], heap[p] = heap[p], heap[i]
            i = p
        else:
            break


@numba.njit(cache=True)
def _grown(a, keep, cap):
    """A buffer of ``cap`` rows that starts with ``a[:keep]``; the new rows
    are uninitialised, in a 2-D buffer -1."""
    if a.ndim == 1:
        return np.concatenate((a[:keep], np.empty(cap - keep, a.dtype)))
    return np.concatenate((a[:keep], np.full((cap - keep, a.shape[1]), -1, a.dtype)))


@numba.njit(cache=True, inline="always")
def _capped_end(indptr, u, fanout):
    """End of the part of u's edge range (in ``pref`` order) an expansion follows."""
    a = indptr[u]
    z = indptr[u + 1]
    if fanout > 0 and z - a > fanout:
        z = a + fanout
    return z


@numba.njit(cache=True)
def _max_degree(indptr):
    d = 0
    for u in range(len(indptr) - 1):
        d = max(d, indptr[u + 1] - indptr[u])
    return d


@numba.njit(cache=True)
def _meet_depths(H):
    """Bit j of ``allowed[i]``: a walk of i hops may meet a materialised half
    of j hops. Splitting a path after ceil(L/2) hops means j in {i - 1, i},
    and i + j <= H."""
    da = (H + 1) // 2
    db = H // 2
    allowed = np.zeros(da + 1, np.int64)
    for i in range(1, da + 1):
        for j in range(i - 1, i + 1):
            if j <= db and i + j <= H:
                allowed[i] |= 1 << j
    return allowed


@numba.njit(cache=True)
def _walk_targets_first(graph, S, T, fanout, da, db):
    """Whether walking from T and materialising from S is the cheaper way round."""
    indptr, neighbor, pref = graph[0], graph[1], graph[2]
    cost_st = _expand_cost(indptr, neighbor, pref, fanout, S, da) + _expand_cost(indptr, neighbor, pref, fanout, T, db)
    cost_ts = _expand_cost(indptr, neighbor, pref, fanout, T, da) + _expand_cost(indptr, neighbor, pref, fanout, S, db)
    return cost_ts < cost_st


# ---- the materialised half --------------------------------------------------


@numba.njit(cache=True, inline="always")
def _on_chain(b_node, b_parent, k, v):
    """Whether node v is on partial k, from its end back to B."""
    while k >= 0:
        if b_node[k] == v:
            return True
        k = b_parent[k]
    return False


@numba.njit(cache=True, _nrt=False)
def _level_size(indptr, fanout, b_node, lo, hi):
    """Edges the (capped) expansion of partials lo..hi-1 follows: a bound on
    the size of the next level."""
    need = 0
    for k in range(lo, hi):
        u = b_node[k]
        need += _capped_end(indptr, u, fanout) - indptr[u]
    return need


@numba.njit(cache=True, _nrt=False)
def _expand_level(graph, b_node, b_parent, b_edge, b_depth, b_cost, lo, hi, nbp, d, fanout):
    """Appends the simple one-hop extensions of partials lo..hi-1 (level
    d - 1) from ``nbp`` on, with the caps; the arrays have room. Returns the
    new count and the edges examined."""
    indptr, neighbor, pref, node_cost = graph[0], graph[1], graph[2], graph[4]
    work = 0
    for k in range(lo, hi):
        u = b_node[k]
        inner = b_cost[k] + (node_cost[u] if d > 1 else 0.0)
        for p in range(indptr[u], _capped_end(indptr, u, fanout)):
            e = pref[p]
            v = neighbor[e]
            work += 1
            if _on_chain(b_node, b_parent, k, v):  # the partial must stay simple
                continue
            b_node[nbp] = v
            b_parent[nbp] = k
            b_edge[nbp] = e
            b_depth[nbp] = d
            b_cost[nbp] = inner
            nbp += 1
    return nbp, work


@numba.njit(cache=True)
def _materialise_half(graph, B, db, fanout):
    """Every simple partial path of at most db hops from B with the caps,
    level by level: the half's arrays, their length and the edges examined."""
    nb = len(B)
    b_node = np.empty(nb, np.int64)
    b_parent = np.empty(nb, np.int64)
    b_edge = np.empty(nb, np.int64)
    b_depth = np.empty(nb, np.int64)
    b_cost = np.empty(nb, np.float64)
    for k in range(nb):
        b_node[k] = B[k]
        b_parent[k] = -1
        b_edge[k] = -1
        b_depth[k] = 0
        b_cost[k] = 0.0
    nbp = nb
    work = 0
    level_lo = 0
    for d in range(1, db + 1):
        level_hi = nbp
        need = _level_size(graph[0], fanout, b_node, level_lo, level_hi)
        if nbp + need > len(b_node):
            cap = nbp + need
            b_node = _grown(b_node, nbp, cap)
            b_parent = _grown(b_parent, nbp, cap)
            b_edge = _grown(b_edge, nbp, cap)
            b_depth = _grown(b_depth, nbp, cap)
            b_cost = _grown(b_cost, nbp, cap)
        nbp, w = _expand_level(graph, b_node, b_parent, b_edge, b_depth, b_cost, level_lo, level_hi, nbp, d, fanout)
        work += w
        level_lo = level_hi
    return b_node, b_parent, b_edge, b_depth, b_cost, nbp, work


@numba.njit(cache=True)
def _index_half(b_node, b_depth, nbp, db, bhead, bmask):
    """Lists the partials by (end node, depth) from ``bhead`` and marks their
    depths in ``bmask``; returns the list links and the length of each list
    from each partial on."""
    b_next = np.empty(nbp, np.int64)
    b_len = np.empty(nbp, np.int64)
    for k in range(nbp):
        v = b_node[k]
        key = v * (db + 1) + b_depth[k]
        nxt = bhead[key]
        b_next[k] = nxt
        b_len[k] = 1 + (b_len[nxt] if nxt >= 0 else 0)
        bhead[key] = k
        bmask[v] |= np.uint8(1 << b_depth[k])
    return b_next, b_len


@numba.njit(cache=True)
def _unindex_half(b_node, b_depth, nbp, db, bhead, bmask):
    """Undoes :func:`_index_half`, for the next question."""
    for k in range(nbp):
        v = b_node[k]
        bhead[v * (db + 1) + b_depth[k]] = -1
        bmask[v] = 0


@numba.njit(cache=True)
def _meet_sets(b_node, b_depth, nbp, allowed, da):
    """Sorted distinct end nodes of the partials walk depth i may meet:
    ``meet[meet_ptr[i]:meet_ptr[i + 1]]``."""
    meet_ptr = np.zeros(da + 2, np.int64)
    meet = np.empty(0, np.int64)
    for i in range(1, da + 1):
        sel = np.empty(nbp, np.int64)
        m = 0
        for k in range(nbp):
            if (allowed[i] >> b_depth[k]) & 1:
                sel[m] = b_node[k]
                m += 1
        u_sel = np.unique(sel[:m])
        meet = np.concatenate((meet, u_sel))
        meet_ptr[i + 1] = meet_ptr[i] + len(u_sel)
    return meet, meet_ptr


# ---- the walk and the meeting step --------------------------------------------


@numba.njit(cache=True, inline="always")
def _meet_candidates(indptr, neighbor, u, meet, m_lo, m_hi, mask, bmask, onpath, cand):
    """The meeting step's edges (exact, never capped): those of u onto a node
    off the walk where a partial of a depth in ``mask`` ends, in edge order,
    written to ``cand``. Scans u's edges, or bisects its neighbour-sorted edge
    list for each meet node ``meet[m_lo:m_hi]`` when that is cheaper. Returns
    their number and the edges examined."""
    a = indptr[u]
    z = indptr[u + 1]
    deg = z - a
    n = 0
    work = 0
    if (m_hi - m_lo) * (np.log2(deg + 1.0) + 2.0) < deg:
        for mi in range(m_lo, m_hi):
            v = meet[mi]
            e = _lower_bound(neighbor, a, z, v)
            work += 1
            if onpath[v] or not (bmask[v] & mask):
                continue
            while e < z and neighbor[e] == v:
                cand[n] = e
                n += 1
                e += 1
    else:
        for e in range(a, z):
            v = neighbor[e]
            work += 1
            if onpath[v] or not (bmask[v] & mask):
                continue
            cand[n] = e
            n += 1
    return n, work


@numba.njit(cache=True, inline="always")
def _joins_at_most(cand, n_cand, neighbor, bmask, mask, db, bhead, b_len):
    """The most paths the meeting step over ``cand[:n_cand]`` can make: the
    partials ending at each candidate's node with a depth in ``mask``."""
    n = 0
    for c in range(n_cand):
        v = neighbor[cand[c]]
        for j in range(db + 1):
            if ((bmask[v] & mask) >> j) & 1:
                n += b_len[bhead[v * (db + 1) + j]]
    return n


@numba.njit(cache=True, inline="always")
def _crosses_walk(b_node, b_parent, onpath, k):
    """Whether partial k, before its end node, passes a node the walk is on."""
    kk = b_parent[k]
    while kk >= 0:
        if onpath[b_node[kk]]:
            return True
        kk = b_parent[kk]
    return False


@numba.njit(cache=True, inline="always")
def _assemble_path(path_buf, walk_edges, depth, e, k, b_depth, b_edge, b_parent, twin, swapped, L):
    """``path_buf[:L]``: the walk's edges, its last edge e, then partial k
    walked back to B; reversed (edges and order) when the walk is from T, so
    that every path runs from S to T."""
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
        for y in range(L // 2):
            tmp = path_buf[y]
            path_buf[y] = path_buf[L - 1 - y]
            path_buf[L - 1 - y] = tmp
        for y in range(L):
            path_buf[y] = twin[path_buf[y]]


@numba.njit(cache=True, inline="always")
def _path_hash(path_buf, L, seed_h):
    """Seeded hash of the path's edges, the tie-break between equal costs."""
    h = seed_h
    for y in range(L):
        h = _mix(h ^ np.uint64(path_buf[y]))
    return h


@numba.njit(cache=True, inline="always")
def _keep_path(top, n_t, max_paths, c, h, path_buf, L):
    """Offers the path ``path_buf[:L]`` of cost c and tie hash h to the top-K
    buffer of n_t paths: appended when every path is kept (it has room),
    pushed while fewer than K are kept, else it replaces the dearest if it is
    cheaper. Returns the buffer's new size."""
    t_cost, t_hash, t_hops, t_edges, heap = top
    if max_paths <= 0 or n_t < max_paths:
        slot = n_t
    elif _heap_less(c, h, t_cost[heap[0]], t_hash[heap[0]]):
        slot = heap[0]
    else:
        return n_t  # dearer than the K kept
    t_cost[slot] = c
    t_hash[slot] = h
    t_hops[slot] = L
    for y in range(t_edges.shape[1]):
        t_edges[slot, y] = path_buf[y] if y < L else -1
    if max_paths <= 0:
        return n_t + 1
    if n_t < max_paths:
        heap[n_t] = slot
        _sift_up(heap, n_t, t_cost, t_hash)
        return n_t + 1
    _sift_down(heap, n_t, t_cost, t_hash)
    return n_t


@numba.njit(cache=True, inline="always")
def _join_halves(v, e, depth, vmask, graph, half, walk, top, n_t, search, swapped, db):
    """Every path made of the walk (at ``depth``), its step over edge e onto
    v, and a partial ending at v of a depth in ``vmask`` that does not cross
    the walk, offered to the top-K buffer. Returns the buffer's new size and
    the paths found."""
    twin, node_cost = graph[3], graph[4]
    b_node, b_parent, b_edge, b_depth, b_cost, b_next, b_len, bhead, bmask = half
    walk_edges, walk_g, onpath, path_buf = walk[1], walk[4], walk[5], walk[6]
    max_paths, hop_cost, hub_weight, seed_h = search
    i = depth + 1
    found = 0
    for j in range(db + 1):
        if not ((vmask >> j) & 1):
            continue
        k = bhead[v * (db + 1) + j]
        while k >= 0:
            if not _crosses_walk(b_node, b_parent, onpath, k):
                L = i + j
                c = hop_cost * L + hub_weight * (walk_g[depth] + (node_cost[v] if j > 0 else 0.0) + b_cost[k])
                _assemble_path(path_buf, walk_edges, depth, e, k, b_depth, b_edge, b_parent, twin, swapped, L)
                h = _path_hash(path_buf, L, seed_h)
                found += 1
                n_t = _keep_path(top, n_t, max_paths, c, h, path_buf, L)
            k = b_next[k]
    return n_t, found


@numba.njit(cache=True, _nrt=False)
def _walk(depth, graph, half, meet, meet_ptr, allowed, walk, cand, top, n_t, search, swapped, fanout, da, db):
    """The depth-first walk of the long half, at most da hops, from the node
    it is on at ``depth`` (which it enters): at each node it enters it takes
    the meeting step, and a step is pruned once K paths are kept and every
    path through it is dearer than the K-th. Returns (-1, buffer size, paths
    found, edges examined, 0) when done; when every path is kept and the
    meeting step at ``depth`` needs a bigger buffer it returns early, with
    that depth and the size needed: make room and call it again."""
    indptr, neighbor, pref, node_cost = graph[0], graph[1], graph[2], graph[4]
    b_len, bhead, bmask = half[6], half[7], half[8]
    walk_nodes, walk_edges, walk_pos, walk_lim, walk_g, onpath = walk[0], walk[1], walk[2], walk[3], walk[4], walk[5]
    t_cost, heap = top[0], top[4]
    max_paths, hop_cost, hub_weight = search[0], search[1], search[2]
    found = 0
    work = 0
    entering = True
    while depth >= 0:
        u = walk_nodes[depth]
        if entering:
            entering = False
            # the meeting step: the walk's last hop, at depth + 1
            mask = allowed[depth + 1]
            n_cand, w = _meet_candidates(indptr, neighbor, u, meet, meet_ptr[depth + 1], meet_ptr[depth + 2], mask,
                                         bmask, onpath, cand)
            if max_paths <= 0:
                need = n_t + _joins_at_most(cand, n_cand, neighbor, bmask, mask, db, bhead, b_len)
                if need > len(t_cost):  # the caller makes room, then this step is taken again
                    return depth, n_t, found, work, need
            work += w
            for c in range(n_cand):
                e = cand[c]
                v = neighbor[e]
                n_t, f = _join_halves(v, e, depth, bmask[v] & mask, graph, half, walk, top, n_t, search, swapped, db)
                found += f
            # children of u (walk on), capped; none when the walk is at full length
            walk_pos[depth] = indptr[u] if depth + 1 < da else 0
            walk_lim[depth] = _capped_end(indptr, u, fanout) if depth + 1 < da else 0
        if walk_pos[depth] >= walk_lim[depth]:  # u is done: back up
            onpath[u] = 0
            depth -= 1
            continue
        e = pref[walk_pos[depth]]
        walk_pos[depth] += 1
        v = neighbor[e]
        work += 1
        if onpath[v]:
            continue
        g = walk_g[depth] + node_cost[v]
        # every path through v has v inside and at least depth + 2 hops
        if max_paths > 0 and n_t == max_paths and hop_cost * (depth + 2) + hub_weight * g > t_cost[heap[0]]:
            continue
        walk_edges[depth] = e
        depth += 1
        walk_nodes[depth] = v
        walk_g[depth] = g
        onpath[v] = 1
        entering = True
    return depth, n_t, found, work, 0


@numba.njit(cache=True)
def _walk_from(s, graph, half, meet, meet_ptr, allowed, walk, cand, top, n_t, search, swapped, fanout, da, db):
    """Walks the long half from s (see :func:`_walk`), growing the top-K
    buffer by doubling when it keeps every path. Returns the buffer, its
    size, the paths found and the edges examined."""
    walk_nodes, walk_g, onpath = walk[0], walk[4], walk[5]
    walk_nodes[0] = s
    walk_g[0] = 0.0
    onpath[s] = 1
    depth = 0
    found = 0
    work = 0
    while True:
        depth, n_t, f, w, need = _walk(depth, graph, half, meet, meet_ptr, allowed, walk, cand, top, n_t, search,
                                       swapped, fanout, da, db)
        found += f
        work += w
        if depth < 0:
            return top, n_t, found, work
        cap = max(2 * len(top[0]), need)
        top = (_grown(top[0], n_t, cap), _grown(top[1], n_t, cap), _grown(top[2], n_t, cap),
               _grown(top[3], n_t, cap), top[4])


# ---- per question, per batch --------------------------------------------------


@numba.njit(cache=True)
def _new_top(max_paths, H):
    """An empty top-K buffer: K slots, or 64 to grow when every path is kept."""
    k_cap = max_paths if max_paths > 0 else 64
    return (np.empty(k_cap, np.float64), np.empty(k_cap, np.uint64), np.empty(k_cap, np.int64),
            np.full((k_cap, H), -1, np.int64), np.empty(k_cap, np.int64))


@numba.njit(cache=True)
def _search_question(S, T, graph, bhead, bmask, walk, cand, allowed, search, fanout, H):
    """One question's paths from S to T: the top-K buffer, its size, whether
    the walk went from T, the edges examined and the paths found."""
    da = (H + 1) // 2  # hops of the walked half
    db = H // 2  # hops of the materialised half
    # walk from the side whose expansion is cheaper, materialise the other
    swapped = _walk_targets_first(graph, S, T, fanout, da, db)
    A = T if swapped else S
    B = S if swapped else T
    b_node, b_parent, b_edge, b_depth, b_cost, nbp, work = _materialise_half(graph, B, db, fanout)
    b_next, b_len = _index_half(b_node, b_depth, nbp, db, bhead, bmask)
    meet, meet_ptr = _meet_sets(b_node, b_depth, nbp, allowed, da)
    half = (b_node, b_parent, b_edge, b_depth, b_cost, b_next, b_len, bhead, bmask)
    top = _new_top(search[0], H)
    n_t = 0
    found = 0
    for s in A:
        top, n_t, f, w = _walk_from(s, graph, half, meet, meet_ptr, allowed, walk, cand, top, n_t, search, swapped,
                                    fanout, da, db)
        found += f
        work += w
    _unindex_half(b_node, b_depth, nbp, db, bhead, bmask)
    return top, n_t, swapped, work, found


@numba.njit(cache=True)
def _append_paths(out, n_out, q, top, n_t):
    """Appends question q's n_t kept paths, cheapest first, ties by hash (a
    stable sort by cost of the hash-sorted paths). Returns the output buffer
    (grown by doubling) and its new size."""
    o_q, o_hops, o_cost, o_hash, o_edges = out
    if n_out + n_t > len(o_q):
        cap = max(len(o_q) * 2, n_out + n_t)
        o_q = _grown(o_q, n_out, cap)
        o_hops = _grown(o_hops, n_out, cap)
        o_cost = _grown(o_cost, n_out, cap)
        o_hash = _grown(o_hash, n_out, cap)
        o_edges = _grown(o_edges, n_out, cap)
        out = (o_q, o_hops, o_cost, o_hash, o_edges)
    t_cost, t_hash, t_hops, t_edges = top[0], top[1], top[2], top[3]
    by_hash = np.argsort(t_hash[:n_t])
    order = by_hash[np.argsort(t_cost[:n_t][by_hash], kind="mergesort")]
    for x in order:
        o_q[n_out] = q
        o_hops[n_out] = t_hops[x]
        o_cost[n_out] = t_cost[x]
        o_hash[n_out] = t_hash[x]
        for y in range(o_edges.shape[1]):
            o_edges[n_out, y] = t_edges[x, y]
        n_out += 1
    return out, n_out


@numba.njit(cache=True)
def _mine_batch(indptr, neighbor, pref, twin, node_cost, src_ptr, src, tgt_ptr, tgt,
                max_hops, max_paths, fanout, hop_cost, hub_weight, seed):
    n_nodes = len(indptr) - 1
    H = max_hops
    da = (H + 1) // 2
    db = H // 2
    nq = len(src_ptr) - 1
    graph = (indptr, neighbor, pref, twin, node_cost)
    search = (max_paths, hop_cost, hub_weight, _mix(seed))
    allowed = _meet_depths(H)
    # workspace shared by the questions; each leaves it as it found it
    bhead = np.full(n_nodes * (db + 1), -1, np.int64)
    bmask = np.zeros(n_nodes, np.uint8)
    walk = (np.empty(da + 1, np.int64), np.empty(da + 1, np.int64), np.empty(da + 1, np.int64),
            np.empty(da + 1, np.int64), np.empty(da + 1, np.float64), np.zeros(n_nodes, np.uint8),
            np.empty(H, np.int64))
    cand = np.empty(_max_degree(indptr), np.int64)  # the meeting step's edges at a node
    # output, grown by doubling
    o_cap = 1024
    out = (np.empty(o_cap, np.int64), np.empty(o_cap, np.int64), np.empty(o_cap, np.float64),
           np.empty(o_cap, np.uint64), np.full((o_cap, H), -1, np.int64))
    n_out = 0
    stats = np.zeros((nq, 3), np.int64)
    for q in range(nq):
        S = src[src_ptr[q]:src_ptr[q + 1]]
        T = tgt[tgt_ptr[q]:tgt_ptr[q + 1]]
        if len(S) == 0 or len(T) == 0:
            continue
        top, n_t, swapped, work, found = _search_question(S, T, graph, bhead, bmask, walk, cand, allowed, search,
                                                          fanout, H)
        out, n_out = _append_paths(out, n_out, q, top, n_t)
        stats[q, 0] = work
        stats[q, 1] = found
        stats[q, 2] = 1 if swapped else 0
    o_q, o_hops, o_cost, o_hash, o_edges = out
    return o_q[:n_out], o_hops[:n_out], o_cost[:n_out], o_hash[:n_out], o_edges[:n_out], stats
