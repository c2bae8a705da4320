"""The order in which a worker takes its samples, epoch by epoch.

Each worker holds its rows of the tokenised dataset in memory (row ``i`` of
the sample table belongs to worker ``i % world``: fixed, whatever Ray Data's
block placement) and draws a fresh seeded order every epoch, so the in-batch
negatives of a contrastive objective change from epoch to epoch, and a run
resumed at (epoch, micro-batch) continues with exactly the batches an
uninterrupted run would have taken.

With ``group_by_length`` rows are sorted by length inside windows of
``window`` micro-batches of the epoch's random order, cut into micro-batches,
and the micro-batches shuffled: a micro-batch pads to lengths that are close,
and which rows share a micro-batch is still random across epochs.
"""
from __future__ import annotations

import numpy as np


def local_rows(row_ids: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Positions (into ``row_ids``) of this worker's rows, in row order."""
    row_ids = np.asarray(row_ids, dtype=np.int64)
    mine = np.flatnonzero(row_ids % world == rank)
    return mine[np.argsort(row_ids[mine], kind="stable")]


def batches_per_epoch(total_rows: int, world: int, micro_batch: int) -> int:
    """Micro-batches every worker takes per epoch: the same on every rank
    (collective operations must match), set by the smallest shard."""
    return (total_rows // world) // micro_batch


def epoch_batches(lengths: np.ndarray, micro_batch: int, num_batches: int, seed: int, epoch: int, rank: int,
                  group_by_length: bool = True, window: int = 16) -> list[np.ndarray]:
    """``num_batches`` micro-batches (index arrays into this worker's rows)
    for ``epoch``; a function of its arguments alone."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch, rank])
    order = rng.permutation(len(lengths))[: num_batches * micro_batch]
    if not group_by_length:
        return [order[i * micro_batch:(i + 1) * micro_batch] for i in range(num_batches)]
    out = []
    span = micro_batch * window
    for start in range(0, len(order), span):
        w = order[start:start + span]
        w = w[np.argsort(lengths[w], kind="stable")]
        out += [w[i:i + micro_batch] for i in range(0, len(w), micro_batch)]
    perm = rng.permutation(len(out))
    return [out[i] for i in perm]
