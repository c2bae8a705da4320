"""Ray Data datasources over files cut into byte ranges.

Planning (``get_read_tasks``) happens on the driver and only looks at file
sizes; each read task opens its own file handle, parses its range, and
yields Arrow tables of raw rows.

- :class:`RangeDatasource` is the general form: a plan of ``(range, role)``
  and a reader ``read(range, role) -> Iterable[pa.Table]``.
- :class:`LineFileDatasource` plugs in a per-line parser
  ``parse(rows, role, offset, text, file)`` that appends to a
  :class:`~kgscale.kg.schema.RawRows` (the benchmark TSV files).
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Iterable

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.kg.schema import RAW_SCHEMA, RawRows
from kgscale.kg.sources.lines import ByteRange, iter_lines, plan_ranges

# parse(rows, role, offset, text, file) -> None
LineParser = Callable[[RawRows, str, int, str, str], None]
# read(range, role) -> blocks of raw rows
RangeReader = Callable[[ByteRange, str], Iterable[pa.Table]]

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


def target_range_bytes(total: int, parallelism: int, target_bytes: int) -> int:
    # At least `parallelism` tasks when the data allows, but never ranges
    # smaller than 1 MiB: below that, task overhead dominates.
    return max(min(target_bytes, total // max(parallelism, 1) + 1), 1 << 20)


class RangeDatasource(Datasource):
    """Files cut into ranges by ``plan(parallelism)``, each read by ``read``."""

    def __init__(self, plan: Callable[[int], list[tuple[ByteRange, str]]], read: RangeReader, size_bytes: int) -> None:
        self.plan = plan
        self.read = read
        self.size_bytes = size_bytes

    def estimate_inmemory_data_size(self) -> int:
        return self.size_bytes * 3

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        tasks = []
        for rng, role in self.plan(parallelism):
            size = (os.path.getsize(rng.path) if rng.end < 0 else rng.end) - rng.start
            meta = BlockMetadata(num_rows=None, size_bytes=size * 3, input_files=[rng.path], exec_stats=None)
            tasks.append(ReadTask(functools.partial(_read_list, self.read, rng, role), meta, schema=RAW_SCHEMA))
        return tasks


def _read_list(read: RangeReader, rng: ByteRange, role: str):
    return read(rng, role)


class LineFileDatasource(RangeDatasource):
    """``files`` is a list of ``(path, role)``; the parser decides what a role means."""

    def __init__(self, files: list[tuple[str, str]], parse: LineParser, target_bytes: int = 8 << 20) -> None:
        self.files = [(os.path.abspath(p), role) for p, role in files]
        self.parse = parse
        self.target_bytes = target_bytes
        super().__init__(self._plan, functools.partial(_read_lines, parse=parse), sum(os.path.getsize(p) for p, _ in self.files))

    def _plan(self, parallelism: int) -> list[tuple[ByteRange, str]]:
        total = sum(os.path.getsize(p) for p, _ in self.files)
        target = target_range_bytes(total, parallelism, self.target_bytes)
        roles = dict(self.files)
        return [(rng, roles[rng.path]) for rng in plan_ranges([p for p, _ in self.files], target)]


def _read_lines(rng: ByteRange, role: str, parse: LineParser) -> Iterable[pa.Table]:
    return read_range(rng, role, parse)
