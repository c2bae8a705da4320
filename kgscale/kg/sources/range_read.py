"""A read task's work, as plain functions: a byte range of a file parsed into
Arrow tables of raw rows. Testable without Ray.

This module imports no Ray: a read task's function is pickled by reference to
its module, and every worker that runs one imports that module first. Ray
Data takes 0.6 s to import in a fresh worker on this project's 2-core
machine; the datasources that plan the ranges
(:mod:`kgscale.kg.sources.line_datasource`) run on the driver.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import pyarrow as pa

from kgscale.kg.schema import RawRows
from kgscale.kg.lines import ByteRange, CorruptInput, iter_chunks, iter_lines

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


def read_with(read: Callable[[ByteRange, str], Iterable[pa.Table]], rng: ByteRange, role: str) -> Iterator[pa.Table]:
    """A read task of :class:`~kgscale.kg.sources.line_datasource.RangeDatasource`."""
    return coalesce(read(rng, role))


def read_lines_with(rng: ByteRange, role: str, parse: LineParser, parse_chunk: ChunkParser | None) -> Iterator[pa.Table]:
    """A read task of :class:`~kgscale.kg.sources.line_datasource.LineFileDatasource`."""
    return coalesce(read_range(rng, role, parse, parse_chunk))
