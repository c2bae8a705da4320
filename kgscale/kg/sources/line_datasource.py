"""A Ray Data datasource over line-oriented text files cut into byte ranges.

Planning (``get_read_tasks``) happens on the driver and only looks at file
sizes; each read task opens its own file handle, parses the lines of its
range with a plain function, and yields Arrow tables of raw rows. Formats
plug in a parser: ``parse(rows, role, offset, text, file)`` appends to a
:class:`~kgscale.kg.schema.RawRows`.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Iterable, Iterator

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.kg.schema import RAW_SCHEMA, RawRows
from kgscale.kg.lines import ByteRange, CorruptInput, iter_chunks, iter_lines, plan_ranges

# parse(rows, role, offset, text, file) -> None: one line
LineParser = Callable[[RawRows, str, int, str, str], None]
# parse_chunk(role, offset, text, file) -> Arrow table of raw rows: many whole lines
ChunkParser = Callable[[str, int, str, str], pa.Table]

ROWS_PER_BLOCK = 65536
# Rows in a block a read task yields. Read through Ray Data (a user's
# ``ray.data.read_datasource``), a task runs only two blocks ahead of the
# driver's executor, so small blocks would tie every read task to the
# driver's pace; the ingest's own read (kgscale.kg.sources.ray_read) joins a
# task's blocks into one table, whose chunks these become.
ROWS_PER_OUTPUT_BLOCK = 1 << 18


def coalesce(tables: Iterable[pa.Table], rows: int = ROWS_PER_OUTPUT_BLOCK) -> Iterator[pa.Table]:
    """Join consecutive tables into blocks of at least ``rows`` rows (the last
    may be smaller); order is kept."""
    pending: list[pa.Table] = []
    count = 0
    for t in tables:
        pending.append(t)
        count += t.num_rows
        if count >= rows:
            yield pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            pending, count = [], 0
    if pending:
        yield pa.concat_tables(pending) if len(pending) > 1 else pending[0]


def read_range(rng: ByteRange, role: str, parse: LineParser, parse_chunk: ChunkParser | None = None) -> Iterable[pa.Table]:
    """Parse one range into blocks of raw rows. Plain function: testable without Ray.

    With ``parse_chunk``, chunks of whole lines that are valid UTF-8 are
    parsed at once; a chunk with bad bytes falls back to ``parse`` line by
    line, so every bad line is located and the rest of the chunk is kept.
    A compressed file whose stream breaks keeps what came before the break
    and ends with one reject at the offset where it broke.
    """
    try:
        yield from _read_range(rng, role, parse, parse_chunk)
    except CorruptInput as exc:
        rows = RawRows()
        rows.reject(exc.reason, "", rng.path, exc.offset)
        yield rows.table()


def _read_range(rng: ByteRange, role: str, parse: LineParser, parse_chunk: ChunkParser | None) -> Iterable[pa.Table]:
    if parse_chunk is not None:
        for offset, data in iter_chunks(rng):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                yield from _per_line(iter_lines_of(data, offset), rng.path, role, parse)
                continue
            yield parse_chunk(role, offset, text, rng.path)
        return
    yield from _per_line(iter_lines(rng), rng.path, role, parse)


def iter_lines_of(data: bytes, offset: int):
    for line in data.split(b"\n")[: -1 if data.endswith(b"\n") else None]:
        yield offset, line.rstrip(b"\r")
        offset += len(line) + 1


def _per_line(lines, path: str, role: str, parse: LineParser) -> Iterable[pa.Table]:
    rows = RawRows()
    for offset, line in lines:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            rows.reject(f"not valid UTF-8: byte {exc.start}", line.decode("utf-8", "replace"), path, offset)
            continue
        parse(rows, role, offset, text, path)
        if len(rows) >= ROWS_PER_BLOCK:
            yield rows.table()
            rows = RawRows()
    if len(rows):
        yield rows.table()


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
            tasks.append(ReadTask(_reader(rng, roles[rng.path], self.parse, self.parse_chunk), meta, schema=RAW_SCHEMA))
        return tasks


def _reader(rng: ByteRange, role: str, parse: LineParser, parse_chunk: ChunkParser | None):
    return lambda: coalesce(read_range(rng, role, parse, parse_chunk))


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
            tasks.append(ReadTask(functools.partial(_read_with, self.read, rng, role), meta, schema=RAW_SCHEMA))
        return tasks


def _read_with(read, rng: ByteRange, role: str):
    return coalesce(read(rng, role))
