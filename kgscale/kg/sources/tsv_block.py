"""Vectorised parsing of tab-separated benchmark files, a chunk of lines at once.

The per-line parser (:func:`kgscale.kg.sources.benchmark.parse_benchmark_line`)
costs a Python call and a dozen appends a line; here Arrow's C++ kernels
split, validate and slice whole chunks, and only rejected lines (rare) go
through Python. Both give the same rows; the tests hold them to that.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kgscale.kg.schema import ENTITY, RAW_SCHEMA, RELATION, SPLITS, TRIPLE, RawRows
from kgscale.kg.lines import BOM

FIELDS = {**{s: ("head", "relation", "tail") for s in SPLITS}, "entities": ("id", "name", "description"),
          "relations": ("id", "text")}


def parse_tsv_chunk(role: str, offset0: int, text: str, file: str) -> pa.Table:
    """Raw rows for one chunk of whole lines of a benchmark file, starting at byte ``offset0``."""
    names = FIELDS[role]
    k = len(names)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    raw = pa.array(lines, pa.string())
    nbytes = pc.binary_length(raw).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    offsets = offset0 + np.concatenate([[0], np.cumsum(nbytes)[:-1]]).astype(np.int64)
    line = pc.utf8_rtrim(raw, characters="\r")
    parts = pc.split_pattern(line, "\t")
    count = np.array(pc.list_value_length(parts).to_numpy(zero_copy_only=False), dtype=np.int64)
    blank = pc.equal(pc.utf8_trim_whitespace(line), "").to_numpy(zero_copy_only=False)
    ok = (count == k) & ~blank
    if role in ("entities", "relations") and offset0 in (0, len(BOM)) and len(lines):  # after a byte-order mark
        first = [f.strip().lower() for f in lines[0].rstrip("\r").split("\t")]
        if tuple(first) == names:
            ok[0] = False
            count[0] = -1  # header: neither a row nor a reject
    idx = np.flatnonzero(ok)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts.filter(pa.array(ok))))
    cols = [flat.take(pa.array(np.arange(i, len(flat), k))) if len(idx) else pa.array([], pa.string()) for i in range(k)]

    rejects = RawRows()
    for i in np.flatnonzero(~ok & (count >= 0)):
        text_i = line[int(i)].as_py()
        if blank[i]:
            reason = "empty line"
        else:
            reason = f"wrong number of fields: {int(count[i])} (expected {k}: {', '.join(names)})"
        rejects.reject(reason, text_i, file, int(offsets[i]))

    # empty fields among rows with the right count
    if role in SPLITS:
        empty = [pc.equal(c, "").to_numpy(zero_copy_only=False) for c in cols]
    elif role == "entities":
        no_text = pc.and_(pc.equal(cols[1], ""), pc.equal(cols[2], "")).to_numpy(zero_copy_only=False)
        empty = [pc.equal(cols[0], "").to_numpy(zero_copy_only=False), no_text]
    else:
        empty = [pc.equal(c, "").to_numpy(zero_copy_only=False) for c in cols]
    bad = np.zeros(len(idx), dtype=bool)
    for j, e in enumerate(empty):
        for i in np.flatnonzero(e & ~bad):
            if role == "entities" and j == 1:
                reason = f"entity has no text: {cols[0][int(i)].as_py()}"
            else:
                reason = f"empty field: {names[j]}"
            rejects.reject(reason, line[int(idx[i])].as_py(), file, int(offsets[idx[i]]))
        bad |= e
    keep = pa.array(~bad)
    cols = [c.filter(keep) for c in cols]
    n = len(cols[0])
    offs = pa.array(offsets[idx][~bad])
    null = pa.nulls(n, pa.string())
    base = {f.name: pa.nulls(n, f.type) for f in RAW_SCHEMA}
    base["file"] = pa.array(np.full(n, file, dtype=object), pa.string())
    base["offset"] = offs
    if role in SPLITS:
        base.update(kind=pa.array([TRIPLE] * n, pa.string()), split=pa.array([role] * n, pa.string()),
                    head=cols[0], relation=cols[1], tail=cols[2])
    elif role == "entities":
        base.update(kind=pa.array([ENTITY] * n, pa.string()), key=cols[0],
                    name=pc.if_else(pc.equal(cols[1], ""), null, cols[1]),
                    description=pc.if_else(pc.equal(cols[2], ""), null, cols[2]),
                    priority=pa.array(np.zeros(n, np.int32)))
    else:
        base.update(kind=pa.array([RELATION] * n, pa.string()), key=cols[0], name=cols[1],
                    priority=pa.array(np.zeros(n, np.int32)))
    good = pa.Table.from_pydict(base, schema=RAW_SCHEMA)
    return pa.concat_tables([good, rejects.table()]) if len(rejects) else good
