"""Exact filtered ranking in bounded memory.

Given query embeddings Q [n, d], candidate embeddings E [N, d] (L2-normalised
upstream, so the dot product is the cosine), the row of each query's true
answer in E, and each query's other true answers, compute the filtered rank
of every true answer among all candidates.

**Tie rule: the expected rank.** When several candidates score exactly the
true answer's score, the rank is the mean of the best and worst placement::

    rank = 1 + #{j unfiltered: s_j > s_true} + #{j unfiltered, j != true: s_j == s_true} / 2

(the "realistic" rank of Berrendorf et al. 2020, PyKEEN's default). A model
that gives every entity the same score gets (N + 1) / 2, not 1.

**One reduction per row.** With g = sum over unfiltered j of sign(s_j - s_true)
= #greater - #less, and #greater + #less + #ties = N' (the unfiltered count,
the true answer included), the ties cancel out of the expected rank:

    rank = (N' + 1 + g) / 2

so a chunk of scores needs one pass per row that counts the scores above
and below the true one: on a CPU a compiled kernel (numba, rows in
parallel) reads each score once, straight after the matrix multiply wrote
it, so ranking runs close to the GEMM's own speed (an in-place
``sub_().sign_()`` and a row sum, as on a GPU, read and write the chunk five
times, which at 256 MiB a chunk is memory traffic that costs a third of the
time on 2 cores). The filtered answers' signs are read from the same chunk
and subtracted. Counts are integers (exact); on a GPU the sums of +-1 in
float32 are exact below 2**24 candidates (float64 above).

**Memory.** Scores are computed for ``chunk_rows`` queries at a time into one
reused [chunk_rows, N] buffer (``chunk_mb`` MiB); neither the n x N score
matrix nor a dense filter mask ever exists. The filters are slices of one
answer array (:class:`kgscale.kg.answers.AnswerIndex`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class QueryFilters:
    """The answers to filter for each query: ``answers[start[i]:stop[i]]`` are
    candidate rows (-1: an answer that is not a candidate, ignored). They may
    include the query's own true answer, which is never filtered."""

    start: np.ndarray  # int64 [n]
    stop: np.ndarray  # int64 [n]
    answers: np.ndarray  # int64 [A]

    @classmethod
    def from_lists(cls, lists: list) -> "QueryFilters":
        lengths = np.array([len(x) for x in lists], dtype=np.int64)
        stop = np.cumsum(lengths)
        answers = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
        return cls(start=stop - lengths, stop=stop, answers=answers.astype(np.int64))

    @classmethod
    def none(cls, n: int) -> "QueryFilters":
        z = np.zeros(n, dtype=np.int64)
        return cls(start=z, stop=z, answers=np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.start)

    def with_extra(self, extra) -> "QueryFilters":
        """These filters plus one more candidate a query (``extra[i]``; -1: none),
        added only where it is not already filtered."""
        extra = np.asarray(extra, dtype=np.int64).copy()
        n = len(self)
        rows, cols = self.pairs(0, n)
        extra[np.unique(rows[cols == extra[rows]])] = -1
        lengths = self.stop - self.start
        stop = np.cumsum(lengths + 1)
        start = stop - lengths - 1
        answers = np.empty(int(stop[-1]) if n else 0, dtype=np.int64)
        within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        answers[start[rows] + within] = cols
        answers[stop - 1] = extra
        return QueryFilters(start=start, stop=stop, answers=answers)

    def pairs(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(row within the chunk, candidate) for every filter entry of queries lo..hi."""
        start, stop = self.start[lo:hi], self.stop[lo:hi]
        lengths = stop - start
        total = int(lengths.sum())
        rows = np.repeat(np.arange(hi - lo, dtype=np.int64), lengths)
        # positions start[i], start[i]+1, ..., stop[i]-1 for every query, concatenated
        offsets = np.repeat(start - (np.cumsum(lengths) - lengths), lengths)
        return rows, self.answers[offsets + np.arange(total, dtype=np.int64)]


def chunk_rows_for(num_candidates: int, chunk_mb: float) -> int:
    return max(1, int(chunk_mb * (1 << 20) // (4 * max(num_candidates, 1))))


def all_finite(t: torch.Tensor, block_rows: int = 1 << 14) -> bool:
    """No NaN or inf in ``t``, checked a block of rows at a time: torch's
    isfinite makes a float temporary (its abs) and two masks of the whole
    tensor, twice its size again for a 5 GB candidate matrix."""
    return all(bool(torch.isfinite(t[i:i + block_rows]).all()) for i in range(0, t.shape[0], block_rows))


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    return t.to(device=device, dtype=torch.float32).contiguous()


def filtered_ranks(
    queries,
    candidates,
    targets,
    filters: QueryFilters | None = None,
    *,
    chunk_mb: float = 256.0,
    chunk_rows: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Filtered expected ranks (float64 [n], 1 is best; x.5 only from ties).

    ``queries`` [n, d] and ``candidates`` [N, d] are arrays or tensors (scored
    by dot product: pass L2-normalised rows for cosine); ``targets`` [n] the
    candidate row of each query's true answer.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    q = _as_tensor(queries, device)
    e = _as_tensor(candidates, device)
    targets = np.asarray(targets, dtype=np.int64)
    n, num = q.shape[0], e.shape[0]
    if q.ndim != 2 or e.ndim != 2 or q.shape[1] != e.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and candidates {tuple(e.shape)} must be [n, d] and [N, d]")
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} queries")
    if n and (targets.min() < 0 or targets.max() >= num):
        raise ValueError(f"target rows must lie in [0, {num})")
    for name, t in (("queries", q), ("candidates", e)):
        if not all_finite(t):
            raise ValueError(f"non-finite values (NaN or inf) in the {name}' embeddings")
    filters = filters if filters is not None else QueryFilters.none(n)
    if len(filters) != n:
        raise ValueError(f"filters for {len(filters)} queries, expected {n}")
    sum_dtype = torch.float32 if num < (1 << 24) else torch.float64
    rows_per_chunk = chunk_rows or chunk_rows_for(num, chunk_mb)
    buf = torch.empty((min(rows_per_chunk, max(n, 1)), num), dtype=torch.float32, device=device)
    ranks = np.empty(n, dtype=np.float64)
    et = e.T
    from kgscale.console import Ticker

    ticker = Ticker(f"ranking against {num:,} candidates", n, "queries")  # a line only when it takes a while
    with torch.inference_mode():
        for lo in range(0, n, rows_per_chunk):
            ticker.update(lo)
            hi = min(lo + rows_per_chunk, n)
            b = hi - lo
            s = buf[:b]
            torch.mm(q[lo:hi], et, out=s)
            tgt = torch.as_tensor(targets[lo:hi], device=device)
            true = s[torch.arange(b, device=device), tgt].clone()
            rows, cols = filters.pairs(lo, hi)
            keep = (cols >= 0) & (cols != targets[lo:hi][rows])
            rows, cols = rows[keep], cols[keep]
            kept = np.bincount(rows, minlength=b)
            g = sign_sums(s, true, rows, cols, sum_dtype)
            unfiltered = torch.as_tensor(num - kept, dtype=torch.float64, device=device)
            ranks[lo:hi] = ((unfiltered + 1 + g) / 2).cpu().numpy()
    ticker.done()
    return ranks


def sign_sums(scores: torch.Tensor, true: torch.Tensor, rows: np.ndarray, cols: np.ndarray,
              sum_dtype=torch.float32) -> torch.Tensor:
    """float64 [b]: sum over the columns j of ``scores`` [b, N] of sign(scores[i, j] - true[i]),
    less the terms of the filtered entries (``rows[k]``, ``cols[k]``). On a
    GPU ``scores`` is overwritten (with the signs)."""
    b, device = scores.shape[0], scores.device
    on_cpu = device.type == "cpu"
    if on_cpu:
        g = torch.from_numpy(_greater_minus_less(scores.numpy(), true.numpy()).astype(np.float64))
    else:
        scores.sub_(true[:, None]).sign_()  # scores now holds sign(s_j - s_true)
        g = scores.sum(dim=1, dtype=sum_dtype).double()
    if len(rows):
        r = torch.as_tensor(rows, device=device)
        picked = scores[r, torch.as_tensor(cols, device=device)]
        signs = (torch.sign(picked - true[r]) if on_cpu else picked).double()
        g -= torch.zeros(b, dtype=torch.float64, device=device).index_add_(0, r, signs)
    return g


def _greater_minus_less(scores: np.ndarray, true: np.ndarray) -> np.ndarray:
    """int64 [b]: #{j: scores[i, j] > true[i]} - #{j: scores[i, j] < true[i]}."""
    from kgscale.eval._rank_kernel import greater_minus_less

    out = np.empty(scores.shape[0], dtype=np.int64)
    greater_minus_less(scores, true, out)
    return out
