"""What every source gives the ingest stage.

A source is a small object with:

- ``describe() -> dict``: what it is, for the manifest (never a secret);
- ``input_files() -> list[str]``: local files whose checksums the manifest
  records (empty for servers);
- ``datasource() -> ray.data.Datasource``: read tasks that yield raw rows
  (:data:`kgscale.kg.schema.RAW_SCHEMA`), opening files or connections
  inside each task;
- ``entities_from_triples: bool``: whether an entity that appears only in
  triples (with no text row) is kept (RDF, Neo4j) or rejected (benchmarks,
  which name every entity).
"""
from __future__ import annotations

from kgscale.errors import UserError


class SourceError(UserError, ValueError):
    """A source cannot be read at all: missing files, a refused connection, a bad address."""
