"""Key -> id lookup for ingest's encode tasks, built once for all of them.

``pyarrow.compute.index_in`` hashes its whole value set on every call: with
5M entities each encode task rebuilt a 5M-key hash table to look up the keys
of the 60k triples in its block, so the cost per triple grew with the graph
(the 20M-triple ingest did not finish at Ray Data's default block size).
Here every vocabulary key's 64-bit FNV-1a hash is computed once and sorted
with its id (16 bytes a key, shared through the object store); a task hashes
only its own keys, finds each by binary search and confirms the candidate
by comparing the strings, so a lookup is exact whatever the hashes do.
Should two vocabulary keys share a hash (odds about 1 in 10^6 at 5M keys),
the index says so and lookups fall back to ``index_in``; so do lookups in a
vocabulary of at most ``SMALL`` keys (a KG's relations), which ``index_in``
hashes in well under a millisecond where confirming candidates costs more.
"""
from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SMALL = 20_000
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True)
def _fnv1a(offsets: np.ndarray, data: np.ndarray, out: np.ndarray) -> None:
    for i in range(out.shape[0]):
        h = _FNV_OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * _FNV_PRIME
        out[i] = h


def hash_keys(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 FNV-1a of each string's UTF-8 bytes (a null hashes as "")."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if keys.type not in (pa.string(), pa.large_string()):
        keys = keys.cast(pa.string())
    n = len(keys)
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    _, offsets_buf, data_buf = keys.buffers()
    width = np.int64 if keys.type == pa.large_string() else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[keys.offset: keys.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    _fnv1a(offsets, data, out)
    return out


def warm() -> None:
    """Load the compiled hash now: its first call in a process loads it from
    numba's cache and initialises numba's CPU target (0.5-0.7 s on the 2-core
    machine), which a caller can do while it waits on other work."""
    hash_keys(pa.array(["warm"]))


class KeyIndex:
    """Ids of keys in ``keys`` (a key's id is its position there; keys distinct)."""

    def __init__(self, keys: pa.Array | pa.ChunkedArray) -> None:
        self.keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        hashes = hash_keys(self.keys)
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]
        # two keys with one hash: binary search would find only one of them
        self.exact = bool(len(hashes) < 2 or (np.diff(self._hashes) != 0).all())

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """int32 id of each value, null where the value is not a key (or null)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not self.exact or len(self.keys) <= SMALL:
            return pc.index_in(values, value_set=self.keys).cast(pa.int32())
        if len(self.keys) == 0 or len(values) == 0:
            return pa.nulls(len(values), pa.int32())
        h = hash_keys(values)
        # searched in hash order, consecutive searches walk the index in one
        # direction and share their cache lines: at 4.4M keys a 60k-key block
        # took 42 ms in arrival order and 10 ms sorted (sort included)
        order = np.argsort(h)
        pos = np.empty(len(h), dtype=np.int64)
        pos[order] = np.searchsorted(self._hashes, h[order])
        np.minimum(pos, len(self._hashes) - 1, out=pos)
        ids = self._order[pos]
        found = self._hashes[pos] == h
        same = pc.equal(self.keys.take(pa.array(ids)), values.cast(self.keys.type))
        found &= pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        return pa.array(ids.astype(np.int32), mask=~found)
