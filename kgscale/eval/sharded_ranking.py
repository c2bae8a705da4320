"""Exact filtered ranking with the candidates sharded over Ray actors.

At 5M entities the candidate embeddings alone are 5 GB at d = 256 (float32)
and a [rows, N] score chunk grows with N: one process holding both stops
fitting long before a cluster does. Here each actor holds one contiguous
shard of candidate rows ``[lo, hi)`` and a score buffer for that shard only,
so its memory is bounded by its shard; every query is scored against every
shard, and what the shards return are counts, never scores.

The ranks are those of :func:`kgscale.eval.ranking.filtered_ranks`, exactly
(same tie rule, same filters): with g = sum over unfiltered j of
sign(s_j - s_true), rank = (N' + 1 + g) / 2, and g is a sum over candidates,
so it is the sum of the shards' partial sums (each one's #higher - #lower
among its own unfiltered candidates; the tied ones are what is left). Per
chunk of queries, two rounds:

1. ``score``: every shard computes its [rows, shard] block of scores (kept in
   its buffer) and returns the true answer's score for the queries whose
   answer lies in it. The true score is read from the same GEMM output as
   the candidates' scores, as in ``filtered_ranks`` (a separately computed
   dot product could differ in the last bit and turn the answer's tie with
   itself, or with a duplicate, into a win or a loss);
2. ``count``: with every query's true score, each shard returns its partial
   g, the filtered answers that fall in it (sent to it alone) subtracted.

N' (the candidates left after filtering) is known to the driver. Counts are
integers, so the sum is exact in any order: 1, 2 or 30 shards give the same
ranks, on one machine or a cluster.
"""
from __future__ import annotations

import os

import numpy as np
import ray

from kgscale.eval.ranking import QueryFilters, all_finite, chunk_rows_for


def shard_bounds(num_candidates: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal row ranges covering [0, num_candidates)."""
    if not 1 <= num_shards <= max(num_candidates, 1):
        raise ValueError(f"num_shards must lie in [1, {num_candidates}], got {num_shards}")
    edges = np.linspace(0, num_candidates, num_shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM), in bytes (0 where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CandidateShard:
    """Rows ``[lo, hi)`` of the candidate embeddings and a score buffer for
    them: the state of one ranking actor (a plain class, so it can be tested
    and profiled without Ray; :class:`ShardedRanker` runs it as an actor).

    ``rows`` is the shard itself ([hi - lo, d]), or a callable ``(lo, hi) ->
    array`` that loads it inside the actor (a slice of a memory-mapped .npy,
    a Parquet range, generated rows), so that no process ever holds more
    than its shard.
    """

    def __init__(self, lo: int, hi: int, rows, *, threads: int = 1, device: str | None = None) -> None:
        import torch

        torch.set_num_threads(threads)
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
        self.lo, self.hi = lo, hi
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        e = rows(lo, hi) if callable(rows) else rows
        e = torch.as_tensor(np.asarray(e, dtype=np.float32)).to(self.device)
        if e.ndim != 2 or e.shape[0] != hi - lo:
            raise ValueError(f"shard [{lo}, {hi}) got rows of shape {tuple(e.shape)}")
        if not all_finite(e):
            raise ValueError(f"non-finite values (NaN or inf) in the candidates' embeddings, rows [{lo}, {hi})")
        self.et = e.T
        self.queries = None
        self.buf = None

    def set_queries(self, queries, targets, rows_per_chunk: int, filter_rows, filter_cols) -> None:
        """The queries [n, d], their targets (global rows), and this shard's
        filter entries: (query, global candidate row), target and -1 already
        removed."""
        import torch

        self.queries = torch.as_tensor(np.asarray(queries, dtype=np.float32)).to(self.device)
        self.targets = np.asarray(targets, dtype=np.int64)
        order = np.argsort(filter_rows, kind="stable")
        self.f_rows = np.asarray(filter_rows, dtype=np.int64)[order]
        self.f_cols = np.asarray(filter_cols, dtype=np.int64)[order] - self.lo
        rows = max(1, min(rows_per_chunk, len(self.targets)))
        if self.buf is None or self.buf.shape[0] < rows:
            self.buf = torch.empty((rows, self.hi - self.lo), dtype=torch.float32, device=self.device)

    def score(self, lo: int, hi: int) -> np.ndarray:
        """Score queries lo..hi against the shard (kept for :meth:`count`);
        float32 [hi - lo]: the true answer's score where it lies in this
        shard, NaN elsewhere."""
        import torch

        with torch.inference_mode():
            s = self.buf[: hi - lo]
            torch.mm(self.queries[lo:hi], self.et, out=s)
            self._chunk = (lo, hi)
            tgt = self.targets[lo:hi]
            mine = np.flatnonzero((tgt >= self.lo) & (tgt < self.hi))
            true = np.full(hi - lo, np.nan, dtype=np.float32)
            if len(mine):
                picked = s[torch.as_tensor(mine, device=self.device), torch.as_tensor(tgt[mine] - self.lo, device=self.device)]
                true[mine] = picked.cpu().numpy()
        return true

    def count(self, lo: int, hi: int, true: np.ndarray) -> np.ndarray:
        """int64 [hi - lo]: #higher - #lower among this shard's unfiltered
        candidates, for the chunk :meth:`score` scored last."""
        import torch

        from kgscale.eval.ranking import sign_sums

        if self._chunk != (lo, hi):
            raise RuntimeError(f"count({lo}, {hi}) after score{self._chunk}")
        a, b = np.searchsorted(self.f_rows, [lo, hi])
        with torch.inference_mode():
            t = torch.as_tensor(np.asarray(true, dtype=np.float32), device=self.device)
            sum_dtype = torch.float32 if self.hi - self.lo < (1 << 24) else torch.float64
            g = sign_sums(self.buf[: hi - lo], t, self.f_rows[a:b] - lo, self.f_cols[a:b], sum_dtype)
        return np.rint(g.cpu().numpy()).astype(np.int64)

    def memory(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "pid": os.getpid(), "peak_rss_bytes": peak_rss_bytes(),
                "shard_bytes": int(self.et.numel() * 4),
                "buffer_bytes": int(self.buf.numel() * 4) if self.buf is not None else 0}


class ShardedRanker:
    """Candidate shards held by Ray actors; :meth:`ranks` ranks queries
    against all of them.

    ``candidates``: the [N, d] array (each shard is put in the object store
    once; its actor maps it from its node's store), or None with ``loader`` ``(lo, hi) ->
    rows`` and ``num_candidates``, for candidates that no single process
    should hold. ``actor_options`` go to ``ray.remote`` (e.g. ``{"num_cpus": 4}``
    or ``{"num_gpus": 1}``; default one CPU per shard, spread over the nodes).
    ``chunk_mb`` bounds each actor's score buffer.
    """

    def __init__(self, candidates=None, *, num_shards: int, loader=None, num_candidates: int | None = None,
                 chunk_mb: float = 256.0, actor_options: dict | None = None, device: str | None = None) -> None:
        if (candidates is None) == (loader is None):
            raise ValueError("give either candidates or loader (with num_candidates)")
        num = len(candidates) if candidates is not None else int(num_candidates or 0)
        self.num_candidates = num
        self.bounds = shard_bounds(num, num_shards)
        opts = {"num_cpus": 1, "scheduling_strategy": "SPREAD", **(actor_options or {})}
        threads = max(1, int(opts.get("num_cpus") or 1))
        actor = ray.remote(CandidateShard).options(**opts)
        self.rows_per_chunk = chunk_rows_for(max(b - a for a, b in self.bounds), chunk_mb)
        self.actors = [
            actor.remote(a, b, loader if loader is not None else ray.put(np.ascontiguousarray(candidates[a:b])),
                         threads=threads, device=device)
            for a, b in self.bounds
        ]

    def ranks(self, queries, targets, filters: QueryFilters | None = None) -> np.ndarray:
        """Filtered expected ranks (float64 [n]), equal to
        ``filtered_ranks(queries, candidates, targets, filters)``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.int64)
        n, num = len(queries), self.num_candidates
        if len(targets) != n:
            raise ValueError(f"{len(targets)} targets for {n} queries")
        if n and (targets.min() < 0 or targets.max() >= num):
            raise ValueError(f"target rows must lie in [0, {num})")
        if not np.isfinite(queries).all():
            raise ValueError("non-finite values (NaN or inf) in the queries' embeddings")
        filters = filters if filters is not None else QueryFilters.none(n)
        if len(filters) != n:
            raise ValueError(f"filters for {len(filters)} queries, expected {n}")
        rows, cols = filters.pairs(0, n)
        keep = (cols >= 0) & (cols != targets[rows])  # the rule of filtered_ranks
        rows, cols = rows[keep], cols[keep]
        unfiltered = num - np.bincount(rows, minlength=n)
        q_ref, t_ref = ray.put(queries), ray.put(targets)
        ray.get([
            actor.set_queries.remote(q_ref, t_ref, self.rows_per_chunk, rows[m], cols[m])
            for actor, (a, b) in zip(self.actors, self.bounds)
            for m in [(cols >= a) & (cols < b)]
        ])
        from kgscale.console import Ticker

        ticker = Ticker(f"ranking against {num:,} candidates in {len(self.actors)} shards", n, "queries")
        g = np.zeros(n, dtype=np.int64)
        for lo in range(0, n, self.rows_per_chunk):
            ticker.update(lo)
            hi = min(lo + self.rows_per_chunk, n)
            true = np.fmax.reduce(ray.get([actor.score.remote(lo, hi) for actor in self.actors]))  # NaN elsewhere
            g[lo:hi] = np.sum(ray.get([actor.count.remote(lo, hi, true) for actor in self.actors]), axis=0)
        ticker.done()
        return (unfiltered + 1 + g) / 2

    def memory(self) -> list[dict]:
        """Per actor: its rows, peak RSS, shard and buffer bytes."""
        return ray.get([actor.memory.remote() for actor in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "ShardedRanker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
