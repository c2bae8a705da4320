"""pyoxigraph's stream parsers, restarted after an error that swallowed lines.

In Turtle a quoted string cannot span lines, but pyoxigraph's lexer reads an
unterminated one on to the end of the file: one error ("between line 2 and
line 9000: Unexpected end of file") and every valid statement after it lost,
silently. When an error's span ends on a later line than it began, the parse
starts again on the line after the one it began on, with the prefixes and
base declared so far put in front, and the line numbers of later errors
shifted back to the file's. Only Turtle: in TriG or N3 the line after may
sit inside a graph or formula block that a restart cannot reopen.
"""
from __future__ import annotations

from typing import Callable, Iterator

import pyoxigraph as ox

RESUMABLE = (ox.RdfFormat.TURTLE,)
MAX_RESTARTS = 100


class _Prefixed:
    """A binary reader that yields ``head`` and then ``f``."""

    def __init__(self, head: bytes, f) -> None:
        self.head, self.f = head, f

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out = self.head if n is None or n < 0 else self.head[:n]
            self.head = self.head[len(out):]
            return out
        return self.f.read(n)


class _LineFinder:
    """Byte offsets of line starts, for lines asked in increasing order (one pass)."""

    def __init__(self, f) -> None:
        self.f, self.line, self.offset = f, 1, f.tell()

    def start_of(self, line: int) -> int | None:
        while self.line < line:
            text = self.f.readline()
            if not text:
                return None
            self.line += 1
            self.offset += len(text)
        return self.offset


def statements(open_file: Callable, fmt, base_iri: str | None) -> Iterator[tuple]:
    """Yield ``("quad", q)`` or ``("error", exc, line)`` (``line``: the file's
    1-based line of the error, 0 when unknown). ``open_file()`` is a context
    manager giving the file as a binary stream."""
    restarts = 0
    with open_file() as f, open_file() as scan:
        finder = _LineFinder(scan)
        parser = ox.parse(f, fmt, base_iri=base_iri, rename_blank_nodes=False)
        it, shift, extra = iter(parser), 0, []
        try:
            while True:
                try:
                    q = next(it)
                except StopIteration:
                    return
                except SyntaxError as exc:
                    line = exc.lineno + shift if exc.lineno else 0
                    yield "error", exc, line
                    end = getattr(exc, "end_lineno", None)
                    if fmt in RESUMABLE and line and end and end > exc.lineno and restarts < MAX_RESTARTS:
                        start = finder.start_of(line + 1)
                        if start is None:
                            return
                        restarts += 1
                        head = _declarations(parser)
                        g = open_file()
                        extra.append(g)
                        h = g.__enter__()
                        h.seek(start)
                        parser = ox.parse(_Prefixed(head, h), fmt, base_iri=base_iri, rename_blank_nodes=False)
                        it = iter(parser)
                        shift = line - head.count(b"\n")
                    continue
                yield "quad", q
        finally:
            for g in extra:
                g.__exit__(None, None, None)


def _declarations(parser) -> bytes:
    lines = [f"@base <{parser.base_iri}> .\n"] if parser.base_iri else []
    lines += [f"@prefix {p}: <{iri}> .\n" for p, iri in (parser.prefixes or {}).items()]
    return "".join(lines).encode()
