"""The snapshot's triple table: sorted by (split, head, relation, tail),
duplicates within a split dropped and counted, valid/test triples also in
train counted (the one-key sort of kgscale.kg.assemble)."""
import numpy as np
import pyarrow as pa

from kgscale.kg.assemble import _IDS, _dedup_sorted


def test_sorted_deduplicated_and_leakage_counted():
    rng = np.random.default_rng(0)
    n = 5000
    head, rel, tail = rng.integers(0, 40, n), rng.integers(0, 3, n), rng.integers(0, 40, n)
    split = rng.choice(3, n, p=[0.8, 0.1, 0.1])
    good = pa.Table.from_arrays([pa.array(head.astype(np.int32)), pa.array(rel.astype(np.int32)),
                                 pa.array(tail.astype(np.int32)), pa.array(split.astype(np.int8))], schema=_IDS)
    table, stats = _dedup_sorted(good)
    names = np.array(["train", "valid", "test"])
    rows = sorted(set(zip(split.tolist(), head.tolist(), rel.tolist(), tail.tolist())))
    assert table.num_rows == len(rows)
    assert list(zip(table["split"].to_pylist(), table["head"].to_pylist(), table["relation"].to_pylist(),
                    table["tail"].to_pylist())) == [(names[s], h, r, t) for s, h, r, t in rows]
    for i, s in enumerate(names):
        assert stats["within_split"][s] == int((split == i).sum()) - sum(1 for r in rows if r[0] == i)
    train = {r[1:] for r in rows if r[0] == 0}
    for i, s in ((1, "valid"), (2, "test")):
        assert stats["also_in_train"][s] == sum(1 for r in rows if r[0] == i and r[1:] in train) > 0
    assert sum(stats["within_split"].values()) > 0


def test_empty_and_no_train():
    table, stats = _dedup_sorted(_IDS.empty_table())
    assert table.num_rows == 0 and stats["also_in_train"] == {"valid": 0, "test": 0}
    only_test = pa.Table.from_arrays([pa.array([1, 1], pa.int32()), pa.array([0, 0], pa.int32()),
                                      pa.array([2, 2], pa.int32()), pa.array([2, 2], pa.int8())], schema=_IDS)
    table, stats = _dedup_sorted(only_test)
    assert table.to_pylist() == [{"head": 1, "relation": 0, "tail": 2, "split": "test"}]
    assert stats == {"within_split": {"train": 0, "valid": 0, "test": 1}, "also_in_train": {"valid": 0, "test": 0}}
