"""The per-epoch sample order: fresh each epoch, a function of (seed, epoch,
rank) alone, so a resumed run takes exactly the remaining batches."""
from __future__ import annotations

import numpy as np

from kgscale.train.order import batches_per_epoch, epoch_batches, local_rows

LENGTHS = np.random.default_rng(0).integers(5, 60, size=203)


def test_each_epoch_draws_a_new_order_and_the_same_again_for_the_same_epoch():
    e0 = epoch_batches(LENGTHS, 8, 25, seed=3, epoch=0, rank=0)
    e1 = epoch_batches(LENGTHS, 8, 25, seed=3, epoch=1, rank=0)
    again = epoch_batches(LENGTHS, 8, 25, seed=3, epoch=0, rank=0)
    assert all((a == b).all() for a, b in zip(e0, again))
    # which rows share a micro-batch changes between epochs
    pairs = lambda bs: {frozenset(b[:2].tolist()) for b in bs}  # noqa: E731
    assert len(pairs(e0) & pairs(e1)) < 5
    assert [len(b) for b in e0] == [8] * 25
    assert len(np.unique(np.concatenate(e0))) == 200  # no row twice within an epoch


def test_a_resumed_epoch_continues_with_the_remaining_batches():
    full = epoch_batches(LENGTHS, 8, 25, seed=1, epoch=2, rank=1)
    # a run stopped after micro-batch 10 of epoch 2 rebuilds the order from its state
    resumed = epoch_batches(LENGTHS, 8, 25, seed=1, epoch=2, rank=1)[10:]
    assert all((a == b).all() for a, b in zip(full[10:], resumed))


def test_length_grouping_pads_less_than_a_plain_shuffle():
    grouped = epoch_batches(LENGTHS, 8, 25, seed=0, epoch=0, rank=0, group_by_length=True)
    plain = epoch_batches(LENGTHS, 8, 25, seed=0, epoch=0, rank=0, group_by_length=False)

    def padded(bs):
        return sum(len(b) * LENGTHS[b].max() for b in bs)

    assert padded(grouped) < 0.8 * padded(plain)
    assert sorted(np.concatenate(grouped).tolist()) == sorted(np.concatenate(plain).tolist())


def test_rows_belong_to_a_fixed_worker_and_every_worker_takes_as_many_batches():
    ids = np.random.default_rng(1).permutation(103)  # as blocks might arrive
    mine = [ids[local_rows(ids, r, 2)] for r in range(2)]
    assert sorted(np.concatenate(mine).tolist()) == list(range(103))
    assert all((m % 2 == r).all() and (np.diff(m) > 0).all() for r, m in enumerate(mine))
    assert batches_per_epoch(103, 2, 8) == 6  # set by the smaller share (51 rows)
