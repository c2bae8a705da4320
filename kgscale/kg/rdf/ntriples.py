"""N-Triples and N-Quads, a block of whole lines at a time.

A read task hands :func:`parse_block` a block of complete lines (see
:func:`kgscale.kg.lines.iter_chunks`). Two paths share the work:

- the *fast path* runs over the whole block in Arrow's C++ kernels: a
  regular expression (RE2, no captures, so a DFA) picks the lines in the
  plain shape ``<s> <p> <o> .`` (single spaces, IRIs and literals without
  escapes), a few splits cut them into terms, and every distinct IRI and
  language tag is then checked once by pyoxigraph's own validators, so the
  fast path accepts exactly what pyoxigraph accepts;
- every other line (escapes, extra whitespace, comments after the dot, and
  every line that is wrong) goes through pyoxigraph's parser, which also
  gives the message for a rejected line. A parse error restarts the parser
  on the next line, so one bad line costs only itself.

Python touches each line of the fast path only through array kernels; that
is what makes the read about 20 times faster than a line-by-line parser.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyoxigraph as ox

from kgscale.kg.rdf.terms import QUADS_SCHEMA, QuadColumns, UnsupportedTerm

IRI = r'<[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>"{}|^`\\]*>'
BNODE = r"_:[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_\-])?"
LITERAL = r'"[^"\\\r\n]*"(?:@[A-Za-z]+(?:-[A-Za-z0-9]+)*|\^\^' + IRI + r")?"
NODE = f"(?:{IRI}|{BNODE})"
FAST_LINE = {
    False: f"^{NODE} {IRI} (?:{NODE}|{LITERAL}) \\.$",
    True: f"^{NODE} {IRI} (?:{NODE}|{LITERAL})(?: {NODE})? \\.$",
}
BLANK_LINE = r"^[ \t]*(?:#.*)?$"
# http(s) IRIs built only from characters that are valid anywhere in an IRI
# (RFC 3987 unreserved, sub-delims, ":", "@", "/", "?", "#" once): valid by
# construction, so the distinct IRIs of a block that match need no check
_PCHARS = r"[A-Za-z0-9._~!$&'()*+,;=:@/\-]"
SIMPLE_IRI = rf"^https?://[A-Za-z0-9.\-]+(?::[0-9]+)?(?:/{_PCHARS}*)?(?:\?(?:{_PCHARS}|\?)*)?(?:#(?:{_PCHARS}|\?)*)?$"
# the fast shape again with every IRI (subject, predicate, node object,
# datatype, graph) in the SIMPLE_IRI form: such lines need no IRI check at all
_SIMPLE_IRI_TERM = "<" + SIMPLE_IRI[1:-1] + ">"
_SIMPLE_NODE = f"(?:{_SIMPLE_IRI_TERM}|{BNODE})"
_SIMPLE_LITERAL = r'"[^"\\\r\n]*"(?:@[A-Za-z]+(?:-[A-Za-z0-9]+)*|\^\^' + _SIMPLE_IRI_TERM + r")?"
STRICT_LINE = {
    False: f"^{_SIMPLE_NODE} {_SIMPLE_IRI_TERM} (?:{_SIMPLE_NODE}|{_SIMPLE_LITERAL}) \\.$",
    True: f"^{_SIMPLE_NODE} {_SIMPLE_IRI_TERM} (?:{_SIMPLE_NODE}|{_SIMPLE_LITERAL})(?: {_SIMPLE_NODE})? \\.$",
}
_POSITION = re.compile(r"^Parser error (?:at|between) line \d+ (?:column (\d+)|between columns (\d+) and \d+)(?: and line \d+ column \d+)?: ")

# reject = (offset in the file, reason, the line as text)
Reject = tuple[int, str, str]


# a statement longer than this is refused before any parser sees it (a 16 MiB
# token made the parsers raise MemoryError); rdf.max_line_bytes sets it
MAX_LINE_BYTES = 1 << 20


def parse_block(data: bytes, base: int, quads: bool, max_line: int = MAX_LINE_BYTES) -> tuple[pa.Table, list[Reject]]:
    """Parse ``data`` (whole lines; ``base`` is its offset in the file) into a
    :data:`QUADS_SCHEMA` table and the rejected lines. ``quads``: N-Quads.

    A line ends at LF, CRLF or a bare CR (the grammar's EOL is [#xD#xA]+),
    so a file with old Mac line ends, or a CR inside a line, is read as the
    parser reads it: one statement a line."""
    if not data:
        return QUADS_SCHEMA.empty_table(), []
    if not data.endswith(b"\n"):
        data += b"\n"
    bare_cr = b"\r" in data and data.count(b"\r") != data.count(b"\r\n")
    lines, offsets = _lines(data, base, bare_cr)
    n = len(lines)
    rejects: list[Reject] = []
    lengths = pc.binary_length(lines).to_numpy(zero_copy_only=False)
    if lengths.max(initial=0) > max_line:
        long = lengths > max_line
        for i in np.flatnonzero(long).tolist():
            raw = lines[i].as_py()[:200].decode("utf-8", "replace")
            rejects.append((int(offsets[i]), f"line too long: {int(lengths[i])} bytes (limit {max_line})", raw))
        lines = pc.if_else(pa.array(long), pa.scalar(b"", pa.binary()), lines)  # blank: neither parsed nor rejected twice
    try:
        data.decode("utf-8")
        text = lines.cast(pa.string())
    except UnicodeDecodeError:
        text, bad = _drop_invalid_utf8(lines)
        for i, start in bad:
            raw = lines[i].as_py()
            rejects.append((int(offsets[i]), f"not valid UTF-8: byte {start}", raw.decode("utf-8", "replace")))
    if b"\r" in data and not bare_cr:
        text = pc.utf8_rtrim(text, characters="\r")
    # one regex pass finds the lines whose IRIs are valid by construction
    # (nearly all in real dumps); only the rest are tried against the looser
    # fast shape, whose IRIs pyoxigraph then checks, and the blank-line
    # pattern. Each line lands in exactly one of strict, checked, blank, slow.
    strict = pc.match_substring_regex(text, STRICT_LINE[quads]).to_numpy(zero_copy_only=False)
    rest = np.flatnonzero(~strict)
    checked = np.zeros(n, bool)
    slow = np.zeros(n, bool)
    if len(rest):
        rest_text = text.take(pa.array(rest))
        loose = pc.match_substring_regex(rest_text, FAST_LINE[quads]).to_numpy(zero_copy_only=False)
        blank = pc.match_substring_regex(rest_text, BLANK_LINE).to_numpy(zero_copy_only=False)
        checked[rest[loose]] = True
        slow[rest[~loose & ~blank]] = True
    slow_lines = text.filter(pa.array(slow)).to_pylist()
    slow_offsets = offsets[slow].tolist()
    tables = []
    for lines_mask, validate in ((strict, False), (checked, True)):
        if not lines_mask.any():
            continue
        table, invalid = _fast_terms(text.filter(pa.array(lines_mask)), offsets[lines_mask], validate)
        tables.append(table)
        if invalid is not None:  # fast-path lines whose IRI or language tag pyoxigraph refuses
            slow_lines += invalid[0]
            slow_offsets += invalid[1]
    if slow_lines:
        slow_table, slow_rejects = parse_lines(slow_lines, slow_offsets, quads)
        tables.append(slow_table)
        rejects += slow_rejects
    return (pa.concat_tables(tables) if tables else QUADS_SCHEMA.empty_table()), sorted(rejects)


def _lines(data: bytes, base: int, bare_cr: bool = False) -> tuple[pa.Array, np.ndarray]:
    """The lines of ``data`` (which ends with a newline) as a binary array
    over the same memory, without their newlines, and their file offsets.
    ``bare_cr``: a CR ends a line too (a CRLF then leaves an empty line)."""
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero((raw == 10) | (raw == 13) if bare_cr else raw == 10)
    starts = np.empty(len(ends) + 1, np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    with_newline = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(starts), pa.py_buffer(data)]
    )
    lines = pc.binary_slice(with_newline, 0, -1).cast(pa.binary())  # blocks are far below 2 GiB
    return lines, starts[:-1] + base


def _drop_invalid_utf8(lines: pa.Array) -> tuple[pa.Array, list[tuple[int, int]]]:
    values = lines.to_pylist()
    bad = []
    for i, v in enumerate(values):
        try:
            v.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append((i, exc.start))
            values[i] = b""  # a blank line: neither parsed nor rejected twice
    return pa.array(values, pa.binary()).cast(pa.string()), bad


def _split(arr: pa.Array, pattern: str, parts: int, reverse: bool = False) -> list[pa.Array]:
    """Split every string into exactly ``parts`` pieces (the caller's shape
    guarantees it) and return the pieces column by column. Taking every
    k-th value is much faster than ``list_element``."""
    lists = pc.split_pattern(arr, pattern, max_splits=parts - 1, reverse=reverse)
    values = lists.values
    n = len(arr)
    if len(values) != n * parts:
        raise AssertionError(f"split into {len(values)} pieces, expected {n} x {parts}")
    return [values.take(pa.array(np.arange(k, n * parts, parts))) for k in range(parts)]


def _node(arr: pa.Array) -> pa.Array:
    """``<iri>`` -> ``iri``; ``_:b`` stays."""
    iri = pc.utf8_slice_codeunits(arr, 1, -1)
    if not pc.any(pc.starts_with(arr, "_:")).as_py():
        return iri
    return pc.if_else(pc.starts_with(arr, "<"), iri, arr)


def _graph(tail: pa.Array) -> pa.Array:
    """The graph term after the object (``""`` when absent) -> key or null."""
    if not pc.any(pc.not_equal(tail, "")).as_py():
        return pa.nulls(len(tail), tail.type)
    g = pc.utf8_trim_whitespace(tail)
    return pc.if_else(pc.equal(g, ""), pa.scalar(None, tail.type), _node(g))


def _fast_terms(lines: pa.Array, offsets: np.ndarray, validate: bool):
    """Cut fast-path lines into terms; return the table and the lines whose
    IRIs or language tags do not validate (for the slow path), or None.
    ``validate=False``: every IRI is known valid (a strict line); language
    tags are still checked."""
    if len(lines) == 0:
        return QUADS_SCHEMA.empty_table(), None
    s, p, rest = _split(lines, " ", 3)
    s, p = _node(s), pc.utf8_slice_codeunits(p, 1, -1)
    rest = pc.utf8_slice_codeunits(rest, 0, -2)  # drop " ."
    is_lit = pc.starts_with(rest, '"')
    is_node = pc.invert(is_lit)
    off = pa.array(offsets, pa.int64())

    # objects that are nodes: "o" or "o g"
    node_rest = pc.binary_join_element_wise(rest.filter(is_node), " ", "")
    o_node, g_node = _split(node_rest, " ", 2)
    nodes = {
        "s": s.filter(is_node), "p": p.filter(is_node), "o": _node(o_node),
        "literal": pa.array(np.zeros(len(node_rest), bool)),
        "lang": pa.nulls(len(node_rest), pa.string()), "datatype": pa.nulls(len(node_rest), pa.string()),
        "g": _graph(g_node), "offset": off.filter(is_node),
    }
    # literals: '"lex"', '"lex"@en', '"lex"^^<dt>', each maybe followed by " g".
    # The lexical form has no quote (fast-path shape), so the last quote closes it.
    lit_rest = rest.filter(is_lit)
    quoted, after = _split(lit_rest, '"', 2, reverse=True)
    lex = pc.utf8_slice_codeunits(quoted, 1, 1 << 30)
    annot, g_lit = _split(pc.binary_join_element_wise(after, " ", ""), " ", 2)
    is_lang = pc.starts_with(annot, "@")
    is_dt = pc.starts_with(annot, "^^")
    null = pa.scalar(None, pa.string())
    lang = pc.if_else(is_lang, pc.utf8_lower(pc.utf8_slice_codeunits(annot, 1, 1 << 30)), null)
    dt = pc.if_else(is_dt, pc.utf8_slice_codeunits(annot, 3, -1), null)
    dt = pc.if_else(pc.equal(dt, "http://www.w3.org/2001/XMLSchema#string"), null, dt)
    lits = {
        "s": s.filter(is_lit), "p": p.filter(is_lit), "o": lex,
        "literal": pa.array(np.ones(len(lit_rest), bool)), "lang": lang, "datatype": dt,
        "g": _graph(g_lit), "offset": off.filter(is_lit),
    }
    table = pa.concat_tables(
        [pa.Table.from_arrays([cols[f.name].cast(f.type) for f in QUADS_SCHEMA], schema=QUADS_SCHEMA) for cols in (nodes, lits)]
    )
    return _split_invalid(table, lines, offsets, validate)


def _iri_columns(table: pa.Table) -> list[pa.Array]:
    cols = []
    for name in ("s", "o", "g"):
        c = table[name].combine_chunks()
        mask = pc.and_(pc.is_valid(c), pc.invert(pc.starts_with(c, "_:")))
        if name == "o":
            mask = pc.and_(mask, pc.invert(table["literal"].combine_chunks()))
        cols.append((name, mask))
    return cols


def _split_invalid(table: pa.Table, lines: pa.Array, offsets: np.ndarray, validate: bool = True):
    """Check each distinct IRI (when ``validate``) and language tag once with
    pyoxigraph; rows holding an invalid one go back to the slow path for its
    message."""
    bad_rows = None
    candidates = [("p", None), ("datatype", None)] + _iri_columns(table) if validate else []
    for name, mask in candidates:
        col = table[name].combine_chunks()
        values = pc.unique((col if mask is None else col.filter(mask)).drop_null())
        values = values.filter(pc.invert(pc.match_substring_regex(values, SIMPLE_IRI)))
        invalid = [v for v in values.to_pylist() if not _valid_iri(v)]
        if invalid:
            hit = pc.fill_null(pc.is_in(col, pa.array(invalid, pa.string())), False)
            bad_rows = hit if bad_rows is None else pc.or_(bad_rows, hit)
    lang = table["lang"]
    langs = [v for v in pc.unique(lang.drop_null()).to_pylist() if not _valid_lang(v)] if lang.null_count < len(lang) else []
    if langs:
        hit = pc.fill_null(pc.is_in(table["lang"], pa.array(langs, pa.string())), False)
        bad_rows = hit if bad_rows is None else pc.or_(bad_rows, hit)
    if bad_rows is None or not pc.any(bad_rows).as_py():
        return table, None
    bad_offsets = set(table["offset"].filter(bad_rows).to_pylist())
    keep = pc.invert(bad_rows)
    line_index = {int(o): i for i, o in enumerate(offsets)}
    back = sorted(bad_offsets)
    return table.filter(keep), ([lines[line_index[o]].as_py() for o in back], back)


_IRI_CACHE: dict[str, bool] = {}


def _valid_iri(value: str) -> bool:
    ok = _IRI_CACHE.get(value)
    if ok is None:
        try:
            ox.NamedNode(value)
            ok = True
        except ValueError:
            ok = False
        if len(_IRI_CACHE) < 1 << 18:  # predicates and datatypes repeat across blocks
            _IRI_CACHE[value] = ok
    return ok


def _valid_lang(tag: str) -> bool:
    try:
        ox.Literal("", language=tag)
        return True
    except ValueError:
        return False


def parse_lines(lines: list[str], offsets: list[int], quads: bool) -> tuple[pa.Table, list[Reject]]:
    """pyoxigraph over individual lines, each of which must hold exactly one
    statement.

    Lines are parsed in runs; a run is trusted only when it parses without an
    error into exactly as many statements as it has lines, so the k-th
    statement is the k-th line's. A run that fails is halved until the bad
    lines stand alone: a line that is wrong costs O(log n) short parses, not a
    re-parse of everything after it (which made 100k junk lines take 97 s),
    and a line that yields two statements (a fifth N-Quads term, a bare CR)
    or none is rejected itself instead of shifting its neighbours' offsets."""
    fmt = ox.RdfFormat.N_QUADS if quads else ox.RdfFormat.N_TRIPLES
    cols = QuadColumns()
    rejects: list[Reject] = []
    todo = [(0, len(lines))]
    while todo:
        lo, hi = todo.pop()
        error = None
        try:
            got = list(ox.parse("\n".join(lines[lo:hi]) + "\n", fmt, rename_blank_nodes=False))
        except SyntaxError as exc:
            got, error = None, exc
        if got is not None and len(got) == hi - lo:
            for k, q in enumerate(got):
                try:
                    cols.add_terms(q.subject, q.predicate, q.object, q.graph_name, offsets[lo + k])
                except UnsupportedTerm as exc:
                    rejects.append((offsets[lo + k], str(exc), lines[lo + k]))
            continue
        if hi - lo > 1:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
            continue
        if error is not None:
            reason = _syntax_message(error)
        else:
            reason = f"syntax error: {len(got)} statements on one line (expected 1)"
        rejects.append((offsets[lo], reason, lines[lo]))
    return cols.table(), rejects


def _syntax_message(exc: SyntaxError) -> str:
    """pyoxigraph's message without its line number (which counts from the
    start of the parsed chunk, not the file: the reject's offset says where)."""
    msg = exc.msg if isinstance(exc.msg, str) else str(exc)
    m = _POSITION.match(msg)
    if m:
        column = m.group(1) or m.group(2)
        msg = f"column {column}: {msg[m.end():]}"
    return f"syntax error: {msg[:300]}"  # a message may quote a hostile token whole
