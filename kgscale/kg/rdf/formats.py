"""RDF file formats: which parser reads which file, and how.

- N-Triples and N-Quads are line formats: a large file is cut into
  line-aligned byte ranges read by many tasks (:func:`read_line_range`).
- Turtle, TriG, RDF/XML, JSON-LD and N3 go through pyoxigraph's streaming
  parser, one file a task (:func:`read_stream_file`): memory stays at one
  block of statements, whatever the file's size.
- TriX goes through rdflib, the one library here that reads it; rdflib
  builds the whole graph in memory, so keep TriX files small.

``.gz`` and ``.bz2`` versions of each are decompressed on the fly.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import os
from typing import Iterator

import pyarrow as pa
import pyoxigraph as ox

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.guards import Refused, check_json_depth, check_xml
from kgscale.kg.rdf.mapping import quads_to_raw
from kgscale.kg.rdf.ntriples import _syntax_message, parse_block
from kgscale.kg.rdf.resume import statements
from kgscale.kg.rdf.terms import QuadColumns, UnsupportedTerm
from kgscale.kg.schema import REJECT, raw_table
from kgscale.kg.lines import ByteRange, CorruptInput, iter_chunks, open_compressed, skip_bom

LINE_FORMATS = {".nt": "nt", ".ntriples": "nt", ".nq": "nq", ".nquads": "nq"}
STREAM_FORMATS = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".turtle": ox.RdfFormat.TURTLE,
    ".trig": ox.RdfFormat.TRIG,
    ".rdf": ox.RdfFormat.RDF_XML,
    ".owl": ox.RdfFormat.RDF_XML,
    ".rdfxml": ox.RdfFormat.RDF_XML,
    ".jsonld": ox.RdfFormat.JSON_LD,
    ".json-ld": ox.RdfFormat.JSON_LD,
    ".n3": ox.RdfFormat.N3,
}
RDFLIB_FORMATS = {".trix": "trix"}
COMPRESSION = {".gz": gzip.open, ".bz2": bz2.open}
STATEMENTS_PER_BLOCK = 65536


def split_compression(path: str) -> tuple[str, str | None]:
    """``a.nt.gz`` -> (``.nt``, ``.gz``)."""
    stem, ext = os.path.splitext(path.lower())
    if ext in COMPRESSION:
        return os.path.splitext(stem)[1], ext
    return ext, None


def format_of(path: str) -> str | None:
    """"nt", "nq", "stream" or "rdflib"; None when not an RDF file name."""
    ext, _ = split_compression(path)
    if ext in LINE_FORMATS:
        return LINE_FORMATS[ext]
    if ext in STREAM_FORMATS:
        return "stream"
    if ext in RDFLIB_FORMATS:
        return "rdflib"
    return None


def file_scope(path: str) -> str:
    """Blank-node scope of a file: its labels mean something only inside it."""
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _open(path: str):
    """The file as a buffered binary stream after any byte-order mark (which
    made pyoxigraph reject every Turtle statement of a file that had one)."""
    _, comp = split_compression(path)
    if comp:
        with open_compressed(path) as (f, _start):
            yield f
        return
    with open(path, "rb") as f:
        skip_bom(f)
        yield f


def _rejects(rejects: list[tuple[int, str, str]], file: str) -> pa.Table:
    return raw_table(
        len(rejects),
        kind=REJECT,
        offset=pa.array([r[0] for r in rejects], pa.int64()),
        reason=pa.array([r[1] for r in rejects], pa.string()),
        raw=pa.array([r[2][:500] for r in rejects], pa.string()),
        file=file,
    )


def corrupt_reject(exc: CorruptInput) -> tuple[int, str, str]:
    return exc.offset, exc.reason, ""


def read_rdf_range(rng: ByteRange, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    """A read task of :class:`~kgscale.kg.sources.rdf_files.RdfFileSource`: a
    byte range of an N-Triples or N-Quads file, or a whole file of another
    format."""
    if format_of(rng.path) in ("nt", "nq"):
        return read_line_range(rng, role, cfg)
    return read_stream_file(rng, role, cfg)


def read_line_range(rng: ByteRange, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    """Read one byte range of an N-Triples or N-Quads file into raw rows."""
    quads = format_of(rng.path) == "nq"
    scope = file_scope(rng.path)
    empty = True
    chunks = iter_chunks(rng, block=4 << 20)
    while True:
        try:
            offset, data = next(chunks)
        except StopIteration:
            break
        except CorruptInput as exc:  # what was read before the break is kept
            yield _rejects([corrupt_reject(exc)], rng.path)
            return
        empty = False
        table, rejects = parse_block(data, offset, quads, cfg.max_line_bytes)
        out = quads_to_raw(table, cfg, file=rng.path, split=role, scope=scope)
        if rejects:
            out = pa.concat_tables([out, _rejects(rejects, rng.path)])
        if out.num_rows:
            yield out
    if empty and rng.start == 0:
        yield _rejects([(0, "empty file: no statements", "")], rng.path)


MAX_STREAM_ERRORS = 1000


def _precheck(path: str, fmt, cfg: RdfConfig) -> None:
    """The guards of :mod:`kgscale.kg.rdf.guards` for the formats that need them."""
    if fmt == ox.RdfFormat.JSON_LD:
        with _open(path) as f:
            check_json_depth(f, cfg.max_nesting_depth)
    elif fmt == ox.RdfFormat.RDF_XML:
        with _open(path) as f:
            check_xml(f, cfg.max_nesting_depth, cfg.max_entity_bytes)


def read_stream_file(rng: ByteRange, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    """Read a whole Turtle / TriG / RDF-XML / JSON-LD / N3 file into raw rows.

    pyoxigraph resumes after a syntax error where the format allows, so the
    statements before (and usually after) a bad one are kept; each error
    becomes a reject at its line (the reason holds the column, never the
    line: ``rejected.by_reason`` is keyed by the reason's text)."""
    path = rng.path
    ext, _ = split_compression(path)
    if ext in RDFLIB_FORMATS:
        yield from _read_rdflib(path, role, cfg)
        return
    fmt = STREAM_FORMATS[ext]
    scope = file_scope(path)
    cols, rejects, at_lines = QuadColumns(), [], []
    count = 0
    try:
        _precheck(path, fmt, cfg)
        for item in statements(lambda: _open(path), fmt, cfg.base_iri):
            if item[0] == "error":
                _, exc, line = item
                if line:
                    at_lines.append((len(rejects), line))
                rejects.append((-1, _stream_error(exc), ""))
                if len(rejects) >= MAX_STREAM_ERRORS:
                    rejects.append((-1, "too many syntax errors: rest of the file skipped", ""))
                    break
                continue
            q = item[1]
            try:
                cols.add_terms(q.subject, q.predicate, q.object, q.graph_name, count)
            except UnsupportedTerm as exc:
                rejects.append((-1, f"unsupported statement: {exc}"[:300], str(q)[:500]))
            count += 1
            if len(cols) >= STATEMENTS_PER_BLOCK:
                yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=scope)
                cols = QuadColumns()
    except ValueError as exc:  # e.g. an invalid JSON-LD context
        rejects.append((-1, f"cannot read: {str(exc)[:300]}", ""))
    except Refused as exc:
        rejects.append((exc.offset, exc.reason, ""))
    except CorruptInput as exc:
        rejects.append(corrupt_reject(exc))
    if len(cols):
        yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=scope)
    if at_lines:
        _locate(path, rejects, at_lines)
    if count == 0 and not rejects:
        rejects.append((0, "empty file: no statements", ""))
    if rejects:
        yield _rejects(rejects, path)


def _stream_error(exc: SyntaxError) -> str:
    """The reason, without the line (the reject's offset has it)."""
    if exc.lineno:
        return _syntax_message(exc)
    msg = exc.msg if isinstance(exc.msg, str) else str(exc)
    return f"syntax error: {msg[:300]}"


def _locate(path: str, rejects: list, at_lines: list[tuple[int, int]]) -> None:
    """Give the rejects at ``at_lines`` (index, 1-based line) the byte offset
    and text of their line, in one pass over the file (a pass per reject
    made a file with many errors quadratic)."""
    want: dict[int, list[int]] = {}
    for i, line in at_lines:
        want.setdefault(line, []).append(i)
    last = max(want)
    try:
        with _open(path) as f:
            pos = f.tell()
            for n, text in enumerate(f, start=1):
                if n in want:
                    shown = text[:500].decode("utf-8", "replace").rstrip("\r\n")
                    for i in want[n]:
                        rejects[i] = (pos, rejects[i][1], shown)
                if n >= last:
                    break
                pos += len(text)
    except CorruptInput:
        pass  # the corruption is its own reject; these keep offset -1


def _read_rdflib(path: str, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    import rdflib

    ds = rdflib.Dataset()
    try:
        with _open(path) as f:
            ds.parse(f, format=RDFLIB_FORMATS[split_compression(path)[0]], publicID=cfg.base_iri)
    except Exception as exc:  # rdflib raises many kinds; each is this file's fault
        yield _rejects([(-1, f"cannot parse with rdflib: {str(exc)[:300]}", "")], path)
        return
    cols, rejects = QuadColumns(), []
    for i, (s, p, o, g) in enumerate(ds.quads((None, None, None, None))):
        # rdflib 7 yields the graph's identifier here (older versions the graph)
        g = getattr(g, "identifier", g)
        gk = None if g is None or g == rdflib.graph.DATASET_DEFAULT_GRAPH_ID else g
        try:
            cols.add_terms(_ox(s), _ox(p), _ox(o), _ox(gk) if gk is not None else None, i)
        except (UnsupportedTerm, ValueError) as exc:  # a term pyoxigraph refuses (a bad IRI rdflib let through)
            rejects.append((-1, f"unsupported statement: {exc}"[:300], f"{s} {p} {o}"[:500]))
    if len(cols):
        yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=file_scope(path))
    elif not rejects:
        rejects.append((0, "empty file: no statements", ""))
    if rejects:
        yield _rejects(rejects, path)


def _ox(term):
    """rdflib term -> pyoxigraph term."""
    import rdflib

    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(str(term))
    if isinstance(term, rdflib.Literal):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        if term.datatype:
            return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
        return ox.Literal(str(term))
    raise UnsupportedTerm(f"unsupported term: {term!r}")
