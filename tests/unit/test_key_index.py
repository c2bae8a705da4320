"""Ingest's key -> id lookup gives exactly pyarrow's index_in ids, for any
strings, slices, chunking and string width, and misses are nulls."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kgscale.kg.key_index import KeyIndex, hash_keys


def _keys(rng, n: int) -> list[str]:
    alphabet = list("abcxyz0189_/:#") + ["é", "日", "\u200b", " "]
    out = {"", "http://example.org/a", "http://example.org/a "}
    while len(out) < n:
        out.add("".join(rng.choice(alphabet, size=rng.integers(1, 12))))
    return sorted(out)


def test_lookup_equals_index_in_for_hits_misses_slices_and_widths(monkeypatch):
    from kgscale.kg import key_index

    monkeypatch.setattr(key_index, "SMALL", 100)  # the hashed path, not index_in's
    rng = np.random.default_rng(0)
    vocab = _keys(rng, 3000)
    index = KeyIndex(pa.array(vocab))
    assert index.exact and len(index) == len(vocab)
    values = [vocab[i] for i in rng.integers(0, len(vocab), 5000)] + ["not a key", "http://example.org/", None, ""]
    rng.shuffle(values)
    arr = pa.array(values, pa.string())
    for v in (arr, arr.slice(7, 3000), pa.chunked_array([arr.slice(0, 10), arr.slice(10)]), arr.cast(pa.large_string())):
        want = pc.index_in(v, value_set=pa.array(vocab)).cast(pa.int32())
        got = index.lookup(v)
        assert got.type == pa.int32() and got.to_pylist() == want.to_pylist()
    assert index.lookup(pa.array(["not a key"])).null_count == 1
    assert KeyIndex(pa.array([], pa.string())).lookup(arr).null_count == len(arr)


def test_hashes_are_fnv1a_of_the_utf8_bytes_and_a_shared_hash_falls_back_exactly(monkeypatch):
    def fnv(s: str) -> int:
        h = 0xCBF29CE484222325
        for b in s.encode():
            h = ((h ^ b) * 0x100000001B3) % (1 << 64)
        return h

    words = ["", "a", "日本", "kgscale"]
    assert hash_keys(pa.array(words)).tolist() == [fnv(w) for w in words]
    assert hash_keys(pa.array(words).slice(1, 2)).tolist() == [fnv("a"), fnv("日本")]
    from kgscale.kg import key_index

    # as if every key collided: binary search could not tell them apart
    monkeypatch.setattr(key_index, "hash_keys", lambda a: np.full(len(a), 7, np.uint64))
    monkeypatch.setattr(key_index, "SMALL", 0)
    index = KeyIndex(pa.array(["a", "b", "c"]))
    assert not index.exact
    assert index.lookup(pa.array(["c", "a", "zz"])).to_pylist() == [2, 0, None]
