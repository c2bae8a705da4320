"""Sources of knowledge graphs, chosen from a SOURCE string by :func:`open_source`.

- ``dataset:NAME``: a dataset from the registry (:mod:`kgscale.kg.registry`)
- a directory in the benchmark layout (``train.txt``, ``valid.txt``, ``test.txt``,
  ``entities.tsv``, ``relations.tsv``)
"""
from __future__ import annotations

from pathlib import Path

from kgscale.kg.sources.base import SourceError
from kgscale.kg.sources.benchmark import BenchmarkSource


def open_source(source: str, *, target_bytes: int = 8 << 20):
    if source.startswith("dataset:"):
        from kgscale.kg import registry

        name = source.split(":", 1)[1]
        return BenchmarkSource(registry.resolve(name), name=name, target_bytes=target_bytes)
    path = Path(source)
    if BenchmarkSource.looks_like(path):
        return BenchmarkSource(path, target_bytes=target_bytes)
    if not path.exists():
        raise SourceError(f"source not found: {source} (expected dataset:NAME or a benchmark directory)")
    raise SourceError(
        f"cannot read {source}: not a benchmark directory (train.txt, valid.txt, test.txt, entities.tsv, relations.tsv)"
    )


__all__ = ["open_source", "SourceError", "BenchmarkSource"]
