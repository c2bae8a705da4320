"""Checks a file must pass before pyoxigraph parses it.

pyoxigraph's JSON-LD parser recurses once per nested object and a deep file
overflows its stack: 105 KB nested 5000 deep kills the process with SIGSEGV,
and with it the read task. Its RDF/XML parser expands internal DTD entities
without limit (860 bytes became a 30 MB name) and costs time quadratic in
the nesting depth. Neither can be told a limit, so the file is scanned first
and refused past ``rdf.max_nesting_depth`` / ``rdf.max_entity_bytes``; a
refusal is one reject for the file with the offset where the limit was
crossed. Both scans read the file once more, streaming.
"""
from __future__ import annotations

import re
import xml.parsers.expat

# one token of JSON's structure: an escape (two bytes, so an escaped quote is
# skipped), a quote, or a bracket
_JSON_TOKEN = re.compile(rb'\\.|["\[\]{}]', re.S)
_ENTITY_REF = re.compile(r"[&%]([A-Za-z_:][\w.:\-]*);")


class Refused(Exception):
    """The file is refused before parsing: ``offset`` and ``reason`` say where and why."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset, self.reason = offset, reason


def check_json_depth(f, limit: int, block: int = 1 << 20) -> None:
    """Raise :class:`Refused` where JSON in the binary stream ``f`` nests
    deeper than ``limit`` (arrays and objects; brackets inside strings do
    not count)."""
    depth, in_string, base, carry = 0, False, 0, b""
    while True:
        chunk = f.read(block)
        if not chunk:
            return
        data = carry + chunk
        # an odd run of backslashes at the end escapes the next chunk's first byte
        run = len(data) - len(data.rstrip(b"\\"))
        carry = data[-1:] if run % 2 else b""
        if carry:
            data = data[:-1]
        for m in _JSON_TOKEN.finditer(data):
            c = data[m.start()]
            if c == 34:  # a quote (escaped ones are two-byte tokens, never this)
                in_string = not in_string
            elif in_string or c == 92:
                continue
            elif c in (91, 123):
                depth += 1
                if depth > limit:
                    raise Refused(base + m.start(), f"nested too deep: more than {limit} levels (rdf.max_nesting_depth)")
            else:
                depth -= 1
        base += len(data)


def check_xml(f, max_depth: int, max_entity_bytes: int) -> None:
    """Raise :class:`Refused` where the XML in the binary stream ``f`` nests
    deeper than ``max_depth`` elements or declares an internal entity whose
    expansion (entities inside entities included) exceeds ``max_entity_bytes``.
    External entities are refused outright: nothing here should read another
    file or the network on a document's say-so. A document that is not
    well-formed XML is refused too (RDF/XML must be XML)."""
    p = xml.parsers.expat.ParserCreate()
    sizes: dict[str, int] = {}
    depth = 0

    def where() -> int:
        return p.CurrentByteIndex

    expanded = 0

    def grow(n: int) -> None:
        # many references to a modest entity add up too: the text and the
        # attribute values may not outgrow the bytes read by more than 16x
        nonlocal expanded
        expanded += n
        if expanded > max_entity_bytes + 16 * where():
            raise Refused(where(), f"entity expansion too large: the document expands to over {expanded} bytes "
                                   f"(rdf.max_entity_bytes {max_entity_bytes})")

    def start(name, attrs):
        nonlocal depth
        depth += 1
        if depth > max_depth:
            raise Refused(where(), f"nested too deep: more than {max_depth} elements (rdf.max_nesting_depth)")
        if attrs:
            grow(sum(len(v) for v in attrs.values()))

    def end(name):
        nonlocal depth
        depth -= 1

    def entity(name, is_parameter, value, base, system_id, public_id, notation):
        if value is None:
            raise Refused(where(), f"external entity refused: {name[:100]}")
        size = len(value.encode("utf-8")) + sum(sizes.get(ref, 0) for ref in _ENTITY_REF.findall(value))
        sizes[name] = size
        if size > max_entity_bytes:
            raise Refused(where(), f"entity expansion too large: {name[:100]} expands to {size} bytes "
                                   f"(rdf.max_entity_bytes {max_entity_bytes})")

    p.StartElementHandler, p.EndElementHandler, p.EntityDeclHandler = start, end, entity
    p.CharacterDataHandler = lambda text: grow(len(text))
    p.buffer_text = True  # one call per text node, not per line
    try:
        p.ParseFile(f)
    except xml.parsers.expat.ExpatError as exc:
        raise Refused(where(), f"not well-formed XML: {xml.parsers.expat.errors.messages[exc.code]}") from None
