"""A Ray Data datasource over line-oriented text files cut into byte ranges.

Planning (``get_read_tasks``) happens on the driver and only looks at file
sizes; each read task opens its own file handle, parses the lines of its
range with a plain function (:mod:`kgscale.kg.sources.range_read`), and
yields Arrow tables of raw rows. Formats plug in a parser: ``parse(rows,
role, offset, text, file)`` appends to a :class:`~kgscale.kg.schema.RawRows`.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Iterable

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.kg.schema import RAW_SCHEMA
from kgscale.kg.lines import ByteRange, plan_ranges
from kgscale.kg.sources.range_read import ChunkParser, LineParser, read_lines_with, read_with


class LineFileDatasource(Datasource):
    """``files`` is a list of ``(path, role)``; the parser decides what a role means."""

    def __init__(self, files: list[tuple[str, str]], parse: LineParser, target_bytes: int = 8 << 20,
                 parse_chunk: ChunkParser | None = None) -> None:
        self.files = [(os.path.abspath(p), role) for p, role in files]
        self.parse = parse
        self.parse_chunk = parse_chunk
        self.target_bytes = target_bytes

    def estimate_inmemory_data_size(self) -> int:
        return sum(os.path.getsize(p) for p, _ in self.files) * 3

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        total = sum(os.path.getsize(p) for p, _ in self.files)
        target = target_range_bytes(total, self.target_bytes)
        roles = dict(self.files)
        tasks = []
        self.places = []  # (file, start) of each task, for a reject if it crashes
        for rng in plan_ranges([p for p, _ in self.files], target):
            self.places.append((rng.path, rng.start))
            size = (os.path.getsize(rng.path) if rng.end < 0 else rng.end) - rng.start
            meta = BlockMetadata(num_rows=None, size_bytes=size * 3, input_files=[rng.path], exec_stats=None)
            read = functools.partial(read_lines_with, rng, roles[rng.path], self.parse, self.parse_chunk)
            tasks.append(ReadTask(read, meta, schema=RAW_SCHEMA))
        return tasks


RANGES_PER_CPU = 4
MIN_RANGE_BYTES = 1 << 20


def target_range_bytes(total: int, target_bytes: int) -> int:
    """Range size for ``total`` bytes: ``target_bytes``, or smaller so that every
    CPU of the cluster gets about RANGES_PER_CPU ranges (they balance), but
    never under 1 MiB. Ray Data's requested parallelism is not followed: its
    default asks for at least 200 blocks whatever the cluster, which cuts a
    56 MB file into 1 MiB ranges whose fixed cost per task (tens of ms)
    outweighs parsing them (a few ms each)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 1)
    want = max(cpus * RANGES_PER_CPU, 1)
    return min(target_bytes, max(total // want + 1, MIN_RANGE_BYTES))


class RangeDatasource(Datasource):
    """The general form: files cut into ``(range, role)`` by ``plan(parallelism)``
    on the driver, each range read by ``read(range, role) -> Iterable[pa.Table]``
    in its own task (RDF files: :mod:`kgscale.kg.sources.rdf_files`)."""

    def __init__(self, plan: Callable[[int], list[tuple[ByteRange, str]]],
                 read: Callable[[ByteRange, str], Iterable[pa.Table]], size_bytes: int) -> None:
        self.plan = plan
        self.read = read
        self.size_bytes = size_bytes

    def estimate_inmemory_data_size(self) -> int:
        return self.size_bytes * 3

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        tasks = []
        self.places = []  # (file, start) of each task, for a reject if it crashes
        for rng, role in self.plan(parallelism):
            self.places.append((rng.path, rng.start))
            size = (os.path.getsize(rng.path) if rng.end < 0 else rng.end) - rng.start
            meta = BlockMetadata(num_rows=None, size_bytes=size * 3, input_files=[rng.path], exec_stats=None)
            tasks.append(ReadTask(functools.partial(read_with, self.read, rng, role), meta, schema=RAW_SCHEMA))
        return tasks
