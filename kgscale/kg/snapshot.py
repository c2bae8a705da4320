"""The KG snapshot: the directory every later stage reads.

::

    SNAPSHOT/
      manifest.json      source, counts per split, rejects, duplicates,
                         input checksums, timings, config, kgscale version
      triples.parquet    head, relation, tail (int32 ids), split (train|valid|test)
      entities.parquet   id, key (original IRI / id), name, description
      relations.parquet  id, key, text (readable)
      rejects.jsonl      one JSON object a rejected input: file, offset, line, reason, raw

Ids are dense ranks of the sorted keys (see :mod:`kgscale.kg.assemble`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.errors import UserError
from kgscale.kg.schema import ENTITIES_SCHEMA, RELATIONS_SCHEMA, SPLITS, TRIPLES_SCHEMA
from kgscale.output import read_manifest

TRIPLES = "triples.parquet"
ENTITIES = "entities.parquet"
RELATIONS = "relations.parquet"


class SnapshotError(UserError, FileNotFoundError):
    pass


def write_tables(directory: Path, triples: pa.Table, entities: pa.Table, relations: pa.Table) -> None:
    pq.write_table(triples.cast(TRIPLES_SCHEMA), directory / TRIPLES, row_group_size=1 << 20)
    pq.write_table(entities.cast(ENTITIES_SCHEMA), directory / ENTITIES)
    pq.write_table(relations.cast(RELATIONS_SCHEMA), directory / RELATIONS)


class Snapshot:
    """Read access to a finished snapshot directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise SnapshotError(f"snapshot not found: {self.path} (run `kgscale ingest SOURCE --out {self.path}` first)")
        missing = [f for f in (TRIPLES, ENTITIES, RELATIONS) if not (self.path / f).is_file()]
        if missing:
            raise SnapshotError(f"{self.path} is not a kgscale snapshot: missing {', '.join(missing)}")
        self.manifest = read_manifest(self.path)

    @functools.cached_property
    def _triples(self) -> pa.Table:
        return pq.read_table(self.path / TRIPLES, schema=TRIPLES_SCHEMA)

    def triples(self, splits: str | tuple[str, ...] | None = None) -> pa.Table:
        """The triples, optionally only those of ``splits``."""
        t = self._triples
        if splits is None:
            return t
        if isinstance(splits, str):
            splits = (splits,)
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {', '.join(SPLITS)}")
        import pyarrow.compute as pc

        return t.filter(pc.is_in(t["split"], pa.array(list(splits))))

    @functools.cached_property
    def entities(self) -> pa.Table:
        return pq.read_table(self.path / ENTITIES, schema=ENTITIES_SCHEMA)

    @functools.cached_property
    def relations(self) -> pa.Table:
        return pq.read_table(self.path / RELATIONS, schema=RELATIONS_SCHEMA)

    @functools.cached_property
    def entity_texts(self) -> list[str]:
        """The tail view of every entity by id (:func:`kgscale.kg.text.entity_text`;
        "" for an entity without name or description): the one table training,
        evaluation and serving embed."""
        from kgscale.kg.text import entity_text

        e = self.entities
        out = [""] * self.num_entities
        for i, n, d in zip(e["id"].to_pylist(), e["name"].to_pylist(), e["description"].to_pylist()):
            out[i] = entity_text(n, d)
        return out

    @functools.cached_property
    def relation_texts(self) -> list[str]:
        """Each relation's readable text by id (its key when it has none), stripped."""
        r = self.relations
        out = [""] * self.num_relations
        for i, t, k in zip(r["id"].to_pylist(), r["text"].to_pylist(), r["key"].to_pylist()):
            out[i] = (t or k or "").strip()
        return out

    @property
    def num_entities(self) -> int:
        return int(self.manifest["counts"]["entities"])

    @property
    def num_relations(self) -> int:
        return int(self.manifest["counts"]["relations"])

    def split_counts(self) -> dict[str, int]:
        return dict(self.manifest["counts"]["triples"])
