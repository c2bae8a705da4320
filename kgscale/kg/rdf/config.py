"""The ``rdf:`` config section: how RDF statements become a KG snapshot.

Applies to every RDF source (files, the embedded store, SPARQL endpoints).
"""
from __future__ import annotations

from typing import Literal

import pyoxigraph as ox
from pydantic import Field, field_validator

from kgscale.config import StrictModel

RDFS = "http://www.w3.org/2000/01/rdf-schema#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
SCHEMA = ("http://schema.org/", "https://schema.org/")

Split = Literal["train", "valid", "test"]


def _check_iris(values: list[str]) -> list[str]:
    for v in values:
        try:
            ox.NamedNode(v)
        except ValueError as exc:
            raise ValueError(f"not an absolute IRI: {v!r} ({exc})") from None
    return values


class RdfSplits(StrictModel):
    """Which split a statement's triple goes to; anything unmatched is ``default``."""

    # split -> glob patterns matched against each input file's name (and its
    # full path), e.g. {valid: ["valid.nt"], test: ["test.*"]}
    files: dict[Split, list[str]] = Field(default_factory=dict)
    # split -> named-graph IRIs (N-Quads, TriG, stores, SPARQL endpoints);
    # a graph mapping wins over a file mapping
    graphs: dict[Split, list[str]] = Field(default_factory=dict)
    default: Split = "train"

    @field_validator("graphs")
    @classmethod
    def _graph_iris(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for iris in v.values():
            _check_iris(iris)
        seen: dict[str, str] = {}
        for split, iris in v.items():
            for iri in iris:
                if iri in seen and seen[iri] != split:
                    raise ValueError(f"graph {iri} is mapped to both {seen[iri]} and {split}")
                seen[iri] = split
        return v

    def graph_split(self) -> dict[str, str]:
        return {iri: split for split, iris in self.graphs.items() for iri in iris}


class RdfConfig(StrictModel):
    # literal-valued predicates that give an entity its name, best first
    name_predicates: list[str] = Field(
        default_factory=lambda: [RDFS + "label", SKOS + "prefLabel", *(s + "name" for s in SCHEMA)]
    )
    # ... and its description
    description_predicates: list[str] = Field(
        default_factory=lambda: [RDFS + "comment", *(s + "description" for s in SCHEMA), SKOS + "definition"]
    )
    # language preference for names and descriptions, best first: "" is an
    # untagged literal, "*" any other language; a tag also matches its
    # subtags ("en" matches "en-gb"). Text in other languages is skipped.
    languages: list[str] = Field(default_factory=lambda: ["en", ""])
    # literal-valued predicates kept as triples: the literal becomes an entity
    # (key: the literal in N-Triples syntax, name: its lexical form). Other
    # literal-valued predicates are counted in the manifest and skipped.
    keep_literal_predicates: list[str] = Field(default_factory=list)
    # keep rdf:type statements as triples (the class is then an entity)
    include_types: bool = True
    splits: RdfSplits = Field(default_factory=RdfSplits)
    # base IRI for relative IRIs in Turtle, TriG, RDF/XML, JSON-LD and N3
    # (N-Triples and N-Quads allow only absolute IRIs)
    base_iri: str | None = None
    # limits on hostile input (each crossing is a reject naming the limit):
    # the bytes of one N-Triples/N-Quads statement
    max_line_bytes: int = Field(1 << 20, ge=1024)
    # the nesting of JSON-LD objects and arrays, and of RDF/XML elements
    # (pyoxigraph's cost grows with the square of it; JSON-LD past a few
    # thousand levels crashes the process)
    max_nesting_depth: int = Field(256, ge=1)
    # what one RDF/XML internal entity may expand to, and by how much the
    # entities may grow the whole document beyond 16x its size
    max_entity_bytes: int = Field(1 << 20, ge=0)

    _iri_lists = field_validator("name_predicates", "description_predicates", "keep_literal_predicates")(
        classmethod(lambda cls, v: _check_iris(v))
    )

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str]) -> list[str]:
        out = []
        for tag in v:
            if tag not in ("", "*"):
                try:
                    ox.Literal("", language=tag)
                except ValueError as exc:
                    raise ValueError(f"not a language tag: {tag!r} ({exc})") from None
            out.append(tag.lower())
        return out

    @field_validator("base_iri")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None:
            _check_iris([v])
        return v
