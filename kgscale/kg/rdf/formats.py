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
import gzip
import hashlib
import os
from typing import Iterator

import pyarrow as pa
import pyoxigraph as ox

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.mapping import quads_to_raw
from kgscale.kg.rdf.ntriples import _syntax_message, parse_block
from kgscale.kg.rdf.terms import QuadColumns, UnsupportedTerm
from kgscale.kg.schema import REJECT, raw_table
from kgscale.kg.sources.lines import ByteRange, iter_chunks

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


def _open(path: str):
    _, comp = split_compression(path)
    return COMPRESSION[comp](path, "rb") if comp else open(path, "rb")


def _rejects(rejects: list[tuple[int, str, str]], file: str) -> pa.Table:
    return raw_table(
        len(rejects),
        kind=REJECT,
        offset=pa.array([r[0] for r in rejects], pa.int64()),
        reason=pa.array([r[1] for r in rejects], pa.string()),
        raw=pa.array([r[2][:500] for r in rejects], pa.string()),
        file=file,
    )


def read_line_range(rng: ByteRange, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    """Read one byte range of an N-Triples or N-Quads file into raw rows."""
    quads = format_of(rng.path) == "nq"
    scope = file_scope(rng.path)
    empty = True
    for offset, data in iter_chunks(rng, block=4 << 20):
        empty = False
        table, rejects = parse_block(data, offset, quads)
        out = quads_to_raw(table, cfg, file=rng.path, split=role, scope=scope)
        if rejects:
            out = pa.concat_tables([out, _rejects(rejects, rng.path)])
        if out.num_rows:
            yield out
    if empty and rng.start == 0:
        yield _rejects([(0, "empty file: no statements", "")], rng.path)


def read_stream_file(rng: ByteRange, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    """Read a whole Turtle / TriG / RDF-XML / JSON-LD / N3 file into raw rows.

    pyoxigraph resumes after a syntax error where the format allows, so the
    statements before (and usually after) a bad one are kept; each error
    becomes a reject with its line and column."""
    path = rng.path
    ext, _ = split_compression(path)
    if ext in RDFLIB_FORMATS:
        yield from _read_rdflib(path, role, cfg)
        return
    scope = file_scope(path)
    cols, rejects = QuadColumns(), []
    count = 0
    with _open(path) as f:
        parser = iter(ox.parse(f, STREAM_FORMATS[ext], base_iri=cfg.base_iri, rename_blank_nodes=False))
        while True:
            try:
                q = next(parser)
            except StopIteration:
                break
            except SyntaxError as exc:
                rejects.append(_stream_reject(path, exc))
                if len(rejects) >= 1000:
                    rejects.append((-1, "too many syntax errors: rest of the file skipped", ""))
                    break
                continue
            except (ValueError, OSError) as exc:  # e.g. an invalid JSON-LD context, a truncated gzip stream
                rejects.append((-1, f"cannot read: {exc}", ""))
                break
            try:
                cols.add_terms(q.subject, q.predicate, q.object, q.graph_name, count)
            except UnsupportedTerm as exc:
                rejects.append((-1, f"statement {count}: {exc}", str(q)))
            count += 1
            if len(cols) >= STATEMENTS_PER_BLOCK:
                yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=scope)
                cols = QuadColumns()
    if len(cols):
        yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=scope)
    if count == 0 and not rejects:
        rejects.append((0, "empty file: no statements", ""))
    if rejects:
        yield _rejects(rejects, path)


def _stream_reject(path: str, exc: SyntaxError) -> tuple[int, str, str]:
    line = exc.lineno or 0
    msg = exc.msg if isinstance(exc.msg, str) else str(exc)
    if line:
        msg = f"line {line}: " + _syntax_message(exc).removeprefix("syntax error: ")
        return _line_offset(path, line), f"syntax error at {msg}", _line_text(path, line)
    return -1, f"syntax error: {msg}", ""


def _line_offset(path: str, line: int) -> int:
    """Byte offset where 1-based ``line`` starts (read only for rejects)."""
    pos = 0
    with _open(path) as f:
        for i, text in enumerate(f, start=1):
            if i == line:
                return pos
            pos += len(text)
    return pos


def _line_text(path: str, line: int) -> str:
    with _open(path) as f:
        for i, text in enumerate(f, start=1):
            if i == line:
                return text.decode("utf-8", "replace").rstrip("\r\n")
    return ""


def _read_rdflib(path: str, role: str, cfg: RdfConfig) -> Iterator[pa.Table]:
    import rdflib

    ds = rdflib.Dataset()
    try:
        with _open(path) as f:
            ds.parse(f, format=RDFLIB_FORMATS[split_compression(path)[0]], publicID=cfg.base_iri)
    except Exception as exc:  # rdflib raises many kinds; each is this file's fault
        yield _rejects([(-1, f"cannot parse with rdflib: {exc}", "")], path)
        return
    cols = QuadColumns()
    for i, (s, p, o, g) in enumerate(ds.quads((None, None, None, None))):
        gk = None if g is None or g.identifier == rdflib.graph.DATASET_DEFAULT_GRAPH_ID else g.identifier
        cols.add_terms(_ox(s), _ox(p), _ox(o), _ox(gk) if gk is not None else None, i)
    if len(cols):
        yield quads_to_raw(cols.table(), cfg, file=path, split=role, scope=file_scope(path))
    else:
        yield _rejects([(0, "empty file: no statements", "")], path)


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
