"""RDF statements as columns: the form every RDF reader produces.

Parsers (the N-Triples fast path, pyoxigraph for other formats, SPARQL
results) all turn statements into a :data:`QUADS_SCHEMA` table, and one
vectorised mapping (:mod:`kgscale.kg.rdf.mapping`) turns that into raw rows.

Terms are plain strings: an IRI is its value (no angle brackets), a blank
node is ``_:label`` (no IRI starts with ``_:``, since an IRI needs a scheme),
a literal is its lexical form with ``literal`` set and its language (lower
case, as pyoxigraph normalises it) or datatype beside it; ``xsd:string``
and ``rdf:langString`` datatypes are left null. The default graph is null.
"""
from __future__ import annotations

import pyarrow as pa
import pyoxigraph as ox

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
RDF_LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

QUADS_SCHEMA = pa.schema(
    [
        ("s", pa.string()),
        ("p", pa.string()),
        ("o", pa.string()),
        ("literal", pa.bool_()),
        ("lang", pa.string()),
        ("datatype", pa.string()),
        ("g", pa.string()),
        ("offset", pa.int64()),
    ]
)


class UnsupportedTerm(ValueError):
    """A term kgscale cannot map (an RDF-star quoted triple, a variable)."""


def node_key(term) -> str:
    t = type(term)
    if t is ox.NamedNode:
        return term.value
    if t is ox.BlankNode:
        return "_:" + term.value
    raise UnsupportedTerm(f"unsupported term in subject/object position: {term}")


class QuadColumns:
    """Column builder for statements coming one at a time (pyoxigraph quads,
    SPARQL solutions); :meth:`table` gives a :data:`QUADS_SCHEMA` table."""

    __slots__ = ("s", "p", "o", "literal", "lang", "datatype", "g", "offset")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, [])

    def __len__(self) -> int:
        return len(self.s)

    def add_terms(self, s, p, o, g, offset: int) -> None:
        """Append one statement from pyoxigraph terms (``g`` None or
        DefaultGraph for the default graph). Raises :class:`UnsupportedTerm`."""
        sk = node_key(s)
        if type(p) is not ox.NamedNode:
            raise UnsupportedTerm(f"unsupported predicate: {p}")
        if type(o) is ox.Literal:
            ov, lit, lang = o.value, True, o.language
            dt = None if lang is not None else o.datatype.value
            if dt == XSD_STRING:
                dt = None
        else:
            ov, lit, lang, dt = node_key(o), False, None, None
        gk = None if g is None or type(g) is ox.DefaultGraph else node_key(g)
        self.s.append(sk)
        self.p.append(p.value)
        self.o.append(ov)
        self.literal.append(lit)
        self.lang.append(lang)
        self.datatype.append(dt)
        self.g.append(gk)
        self.offset.append(offset)

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [pa.array(getattr(self, f.name), f.type) for f in QUADS_SCHEMA], schema=QUADS_SCHEMA
        )


def literal_key(lexical: str, lang: str | None, datatype: str | None) -> str:
    """A literal as an entity key, in N-Triples syntax (for kept literal values)."""
    esc = lexical.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    if lang:
        return f'"{esc}"@{lang}'
    if datatype:
        return f'"{esc}"^^<{datatype}>'
    return f'"{esc}"'
