"""Line-aligned byte ranges, so one large text file is read by many tasks.

A range ``[start, end)`` owns every line that *starts* inside it: a task
skips the partial line at its start (the previous range owns it) and reads
past ``end`` to finish its last line. Compressed files cannot be split and
are read whole by one task.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import os
import zlib
from dataclasses import dataclass
from typing import Iterator

COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}
BOM = b"\xef\xbb\xbf"


class CorruptInput(Exception):
    """A compressed file whose stream breaks: ``offset`` is how far (in
    uncompressed bytes) it decompressed; the reader turns it into a reject."""

    def __init__(self, path: str, offset: int, detail: str) -> None:
        super().__init__(f"{path} @ {offset}: {detail}")
        self.path, self.offset, self.detail = path, offset, detail

    @property
    def reason(self) -> str:
        return f"corrupt compressed file: {self.detail[:200]} (the rest of the file is not read)"


@contextlib.contextmanager
def open_compressed(path: str):
    """A ``.gz`` / ``.bz2`` file opened for reading, positioned after a UTF-8
    byte-order mark; a truncated or corrupt stream raises :class:`CorruptInput`
    (gzip and bz2 raise EOFError, OSError or zlib.error, none of which says
    it is the file's fault)."""
    raw = COMPRESSED[os.path.splitext(path)[1]](path, "rb")
    try:
        f = io.BufferedReader(raw)
        start = skip_bom(f)
        yield f, start
    except (EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        try:
            offset = raw.tell()
        except Exception:  # the stream is broken; its position may be too
            offset = -1
        raise CorruptInput(path, offset, str(exc) or type(exc).__name__) from None
    finally:
        raw.close()


def skip_bom(f) -> int:
    """Step over a UTF-8 byte-order mark at the start of ``f`` (a buffered
    binary stream); returns the offset of the first byte after it. Without
    this the mark glues itself to the first line: in N-Triples the first
    statement was rejected, in a TSV header it made the header an entity."""
    return len(BOM) if f.peek(len(BOM))[: len(BOM)] == BOM and f.read(len(BOM)) else 0


@dataclass(frozen=True)
class ByteRange:
    path: str
    start: int
    end: int  # exclusive; -1 means to the end of the file

    @property
    def compressed(self) -> bool:
        return os.path.splitext(self.path)[1] in COMPRESSED


def plan_ranges(paths: list[str], target_bytes: int) -> list[ByteRange]:
    """Cut files into ranges of about ``target_bytes`` (whole files if compressed)."""
    if target_bytes <= 0:
        raise ValueError("target_bytes must be positive")
    ranges: list[ByteRange] = []
    for path in paths:
        size = os.path.getsize(path)
        if os.path.splitext(path)[1] in COMPRESSED or size <= target_bytes:
            ranges.append(ByteRange(path, 0, -1))
            continue
        for start in range(0, size, target_bytes):
            end = min(start + target_bytes, size)
            ranges.append(ByteRange(path, start, -1 if end == size else end))
    return ranges


def iter_lines(rng: ByteRange, block: int = 1 << 22) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, line)`` for each line the range owns, without its newline.

    Offsets are byte offsets in the (uncompressed) stream, so a reject can be
    located later. Works in blocks, so memory stays at about ``block`` bytes.
    """
    if rng.compressed:
        with open_compressed(rng.path) as (f, start):
            yield from _split(f, start, None, block)
        return
    with open(rng.path, "rb") as f:
        pos = rng.start
        if rng.start > 0:
            # The line that straddles our start belongs to the previous range,
            # unless our start is exactly the beginning of a line.
            f.seek(rng.start - 1)
            if f.read(1) != b"\n":
                skipped = f.readline()
                pos += len(skipped)
        else:
            pos = skip_bom(f)
        limit = None if rng.end < 0 else rng.end
        yield from _split(f, pos, limit, block)


def _split(f, pos: int, limit: int | None, block: int) -> Iterator[tuple[int, bytes]]:
    """Split a stream into lines starting at ``pos``; stop after the line that
    starts before ``limit`` (``None``: read to the end)."""
    carry = b""
    while True:
        if limit is not None and pos >= limit:
            return  # the (partial) line at pos starts in the next range
        chunk = f.read(block)
        if not chunk:
            if carry:
                yield pos, carry.rstrip(b"\r")
            return
        data = carry + chunk
        lines = data.split(b"\n")
        carry = lines.pop()
        for line in lines:
            if limit is not None and pos >= limit:
                return
            yield pos, line.rstrip(b"\r")
            pos += len(line) + 1


def iter_chunks(rng: ByteRange, block: int = 1 << 23) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)``: runs of whole lines the range owns, about
    ``block`` bytes each, for parsers that work on many lines at once. Every
    chunk ends with a newline, except possibly the file's last."""
    if rng.compressed:
        with open_compressed(rng.path) as (f, start):
            yield from _chunks(f, start, None, block)
        return
    with open(rng.path, "rb") as f:
        pos = rng.start
        if rng.start > 0:
            f.seek(rng.start - 1)
            if f.read(1) != b"\n":
                pos += len(f.readline())
        else:
            pos = skip_bom(f)
        yield from _chunks(f, pos, None if rng.end < 0 else rng.end, block)


def _chunks(f, pos: int, limit: int | None, block: int) -> Iterator[tuple[int, bytes]]:
    carry = b""
    while True:
        if limit is not None and pos >= limit:
            return
        chunk = f.read(block)
        if not chunk:
            if carry:
                yield pos, carry
            return
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        complete, carry = data[:cut], data[cut:]
        if not complete:
            continue
        if limit is not None and pos + len(complete) > limit:
            # keep the lines that start before `limit`: up to the first
            # newline at or after limit - 1
            idx = complete.find(b"\n", max(limit - pos - 1, 0))
            yield pos, complete[: idx + 1]
            return
        yield pos, complete
        pos += len(complete)
