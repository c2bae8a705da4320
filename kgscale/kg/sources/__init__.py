"""Sources of knowledge graphs, chosen from a SOURCE string by :func:`open_source`.

- ``dataset:NAME``: a dataset from the registry (:mod:`kgscale.kg.registry`)
- a directory in the benchmark layout (``train.txt``, ``valid.txt``, ``test.txt``,
  ``entities.tsv``, ``relations.tsv``)
- RDF files: a file, a directory or a glob of ``.nt .nq .ttl .trig .rdf .owl
  .jsonld .n3 .trix`` files, each optionally ``.gz`` or ``.bz2``
- ``oxigraph:PATH``: the embedded pyoxigraph store on disk
- a SPARQL 1.1 endpoint: ``sparql+http(s)://...``, or any ``http(s)://`` URL
- Neo4j: ``neo4j://``, ``neo4j+s://``, ``bolt://``, ``bolt+s://`` (and ``+ssc``)
"""
from __future__ import annotations

from pathlib import Path

from kgscale.kg.sources.base import SourceError

# Each source's module is imported when a SOURCE names it, not here: read
# tasks' functions live in this package, and a Ray worker that unpickles one
# imports the package first, so nothing here may pull in Ray Data (see
# kgscale.kg.sources.ray_read).

NEO4J_SCHEMES = ("neo4j://", "neo4j+s://", "neo4j+ssc://", "bolt://", "bolt+s://", "bolt+ssc://")


def open_source(source: str, *, target_bytes: int = 8 << 20, rdf=None, sparql=None, neo4j=None, parallelism: int | None = None):
    """The source a SOURCE string names; ``rdf``, ``sparql`` and ``neo4j`` are
    the typed config sections (defaults when None). ``parallelism``: read
    tasks for sources planned by rows (None: the CPUs of the Ray cluster,
    asked at planning time)."""
    from kgscale.kg.sources.benchmark import BenchmarkSource

    if source.startswith("dataset:"):
        from kgscale.kg import registry

        name = source.split(":", 1)[1]
        return BenchmarkSource(registry.resolve(name), name=name, target_bytes=target_bytes)
    if source.startswith(NEO4J_SCHEMES):
        from kgscale.kg.sources.neo4j_source import Neo4jConfig, Neo4jSource

        return Neo4jSource(source, neo4j or Neo4jConfig(), parallelism=parallelism)
    if source.startswith(("oxigraph:", "sparql+http://", "sparql+https://", "http://", "https://")):
        from kgscale.kg.rdf.config import RdfConfig
        from kgscale.kg.sources.sparql import SparqlConfig, SparqlSource

        return SparqlSource(source, rdf or RdfConfig(), sparql or SparqlConfig(), parallelism=parallelism)
    path = Path(source)
    if BenchmarkSource.looks_like(path):
        return BenchmarkSource(path, target_bytes=target_bytes)
    from kgscale.kg.rdf.config import RdfConfig
    from kgscale.kg.sources.rdf_files import RdfFileSource, looks_like_rdf

    if looks_like_rdf(source):
        return RdfFileSource(source, rdf or RdfConfig(), target_bytes=target_bytes)
    if not path.exists():
        raise SourceError(
            f"source not found: {source} (expected dataset:NAME, a benchmark directory, RDF files, "
            "oxigraph:PATH, a SPARQL endpoint URL or a neo4j:// / bolt:// URI)"
        )
    raise SourceError(
        f"cannot read {source}: neither a benchmark directory (train.txt, valid.txt, test.txt, entities.tsv, "
        "relations.tsv) nor RDF files (.nt, .nq, .ttl, .trig, .rdf, .owl, .jsonld, .n3, .trix, optionally .gz/.bz2)"
    )


__all__ = ["open_source", "SourceError"]
