"""Arrow schemas shared by every source and by the snapshot.

Sources do not assign ids. Each read task yields *raw rows* in
:data:`RAW_SCHEMA`, one row a statement: a triple between entity keys, an
entity's text, a relation's text, or a rejected input with where it came from
and why. :mod:`kgscale.kg.assemble` turns raw rows from any source into the
same snapshot, so the same data gives the same snapshot whatever it came from.
"""
from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "valid", "test")

# kinds of raw row
TRIPLE = "triple"
ENTITY = "entity"
RELATION = "relation"
REJECT = "reject"
# input read but deliberately not mapped (e.g. an RDF literal-valued predicate
# that is not configured): counted by `reason` and `relation`, in `count`
SKIPPED = "skipped"

RAW_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        # triple rows
        ("split", pa.string()),
        ("head", pa.string()),
        ("relation", pa.string()),
        ("tail", pa.string()),
        # entity and relation rows: key with its name (relation: readable text)
        # and description; lower priority wins when a key is given text twice
        ("key", pa.string()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("priority", pa.int32()),
        # where the row came from: a file (or source name) and a byte offset
        # or row number within it; reject rows add the reason and the raw input
        ("file", pa.string()),
        ("offset", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        # skipped rows: how many statements this row stands for
        ("count", pa.int64()),
    ]
)

TRIPLES_SCHEMA = pa.schema(
    [("head", pa.int32()), ("relation", pa.int32()), ("tail", pa.int32()), ("split", pa.string())]
)
ENTITIES_SCHEMA = pa.schema(
    [("id", pa.int32()), ("key", pa.string()), ("name", pa.string()), ("description", pa.string())]
)
RELATIONS_SCHEMA = pa.schema([("id", pa.int32()), ("key", pa.string()), ("text", pa.string())])
REJECTS_SCHEMA = pa.schema(
    [("file", pa.string()), ("offset", pa.int64()), ("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string())]
)


class RawRows:
    """Column builder for a block of raw rows; ``table()`` gives an Arrow table."""

    __slots__ = ("cols",)

    def __init__(self) -> None:
        self.cols: dict[str, list] = {f.name: [] for f in RAW_SCHEMA}

    def __len__(self) -> int:
        return len(self.cols["kind"])

    def _add(self, kind: str, file: str, offset: int, **values) -> None:
        for name, col in self.cols.items():
            if name == "kind":
                col.append(kind)
            elif name == "file":
                col.append(file)
            elif name == "offset":
                col.append(offset)
            else:
                col.append(values.get(name))

    def triple(self, split: str, head: str, relation: str, tail: str, file: str, offset: int) -> None:
        self._add(TRIPLE, file, offset, split=split, head=head, relation=relation, tail=tail)

    def entity(self, key: str, name: str | None, description: str | None, file: str, offset: int, priority: int = 0) -> None:
        self._add(ENTITY, file, offset, key=key, name=name, description=description, priority=priority)

    def relation(self, key: str, text: str | None, file: str, offset: int, priority: int = 0) -> None:
        self._add(RELATION, file, offset, key=key, name=text, priority=priority)

    def reject(self, reason: str, raw: str, file: str, offset: int) -> None:
        self._add(REJECT, file, offset, reason=reason, raw=raw[:500])

    def skipped(self, reason: str, relation: str, count: int, file: str) -> None:
        self._add(SKIPPED, file, -1, reason=reason, relation=relation, count=count)

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=RAW_SCHEMA)


def raw_table(n: int, **columns) -> pa.Table:
    """A :data:`RAW_SCHEMA` table of ``n`` rows from whole columns (arrays or
    scalars); columns not given are null. For vectorised sources."""
    arrays = []
    for f in RAW_SCHEMA:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(value, (pa.Array, pa.ChunkedArray)):
            arrays.append(value.cast(f.type))
        else:
            arrays.append(pa.repeat(pa.scalar(value, f.type), n))
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)
