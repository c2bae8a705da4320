"""A Ray Data datasource over line-oriented text files cut into byte ranges.

Planning (``get_read_tasks``) happens on the driver and only looks at file
sizes; each read task opens its own file handle, parses the lines of its
range with a plain function, and yields Arrow tables of raw rows. Formats
plug in a parser: ``parse(rows, role, offset, text, file)`` appends to a
:class:`~kgscale.kg.schema.RawRows`.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.kg.schema import RAW_SCHEMA, RawRows
from kgscale.kg.sources.lines import ByteRange, iter_lines, plan_ranges

# parse(rows, role, offset, text, file) -> None
LineParser = Callable[[RawRows, str, int, str, str], None]

ROWS_PER_BLOCK = 65536


def read_range(rng: ByteRange, role: str, parse: LineParser) -> Iterable[pa.Table]:
    """Parse one range into blocks of raw rows. Plain function: testable without Ray."""
    rows = RawRows()
    for offset, line in iter_lines(rng):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.reject(f"not valid UTF-8: byte {exc.start}", line.decode("utf-8", "replace"), rng.path, offset)
            continue
        parse(rows, role, offset, text, rng.path)
        if len(rows) >= ROWS_PER_BLOCK:
            yield rows.table()
            rows = RawRows()
    if len(rows):
        yield rows.table()


class LineFileDatasource(Datasource):
    """``files`` is a list of ``(path, role)``; the parser decides what a role means."""

    def __init__(self, files: list[tuple[str, str]], parse: LineParser, target_bytes: int = 8 << 20) -> None:
        self.files = [(os.path.abspath(p), role) for p, role in files]
        self.parse = parse
        self.target_bytes = target_bytes

    def estimate_inmemory_data_size(self) -> int:
        return sum(os.path.getsize(p) for p, _ in self.files) * 3

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        total = sum(os.path.getsize(p) for p, _ in self.files)
        # At least `parallelism` tasks when the data allows, but not ranges
        # under 1 MiB (task overhead would dominate) unless asked for.
        target = min(self.target_bytes, max(total // max(parallelism, 1) + 1, 1 << 20))
        roles = dict(self.files)
        tasks = []
        for rng in plan_ranges([p for p, _ in self.files], target):
            size = (os.path.getsize(rng.path) if rng.end < 0 else rng.end) - rng.start
            meta = BlockMetadata(num_rows=None, size_bytes=size * 3, input_files=[rng.path], exec_stats=None)
            tasks.append(ReadTask(_reader(rng, roles[rng.path], self.parse), meta, schema=RAW_SCHEMA))
        return tasks


def _reader(rng: ByteRange, role: str, parse: LineParser):
    return lambda: read_range(rng, role, parse)
