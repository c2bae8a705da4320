"""What KG completion knows about the graph, apart from embeddings: entity
and relation lookups by key or name, the query text, and the known answers
that ``filter_known`` removes. Held by the ingress, which validates requests
with it before any model work is queued.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from kgscale.kg.answers import AnswerIndex
from kgscale.kg.snapshot import Snapshot
from kgscale.kg.text import query_text
from kgscale.serve.errors import ApiError, bad_request

_SHOWN = 5  # candidates listed when a name is ambiguous


class KGCatalog:
    def __init__(self, snapshot: Snapshot, filter_splits: tuple[str, ...] = ("train", "valid", "test")) -> None:
        self.snapshot = snapshot
        ents = snapshot.entities
        self.ids = ents["id"].to_numpy().astype(np.int64)
        if not np.array_equal(self.ids, np.arange(len(self.ids))):
            raise ValueError(f"{snapshot.path}: entity ids are not 0..n-1")
        self.keys: list[str] = ents["key"].to_pylist()
        self.names: list[str | None] = ents["name"].to_pylist()
        self.descriptions: list[str | None] = ents["description"].to_pylist()
        self.texts = snapshot.entity_texts
        self.has_text = np.array([bool(t) for t in self.texts], dtype=bool)
        self.by_key = {k: i for i, k in enumerate(self.keys)}
        self.by_name: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.names):
            if n:
                self.by_name[n.strip().casefold()].append(i)
        rels = snapshot.relations
        self.relation_keys: list[str] = rels["key"].to_pylist()
        self.relation_texts = snapshot.relation_texts
        self.relation_by = {}
        for i, (k, t) in enumerate(zip(self.relation_keys, self.relation_texts)):
            self.relation_by.setdefault(t.casefold(), i)
        for i, k in enumerate(self.relation_keys):  # a key wins over another relation's text
            self.relation_by[k] = i
        self.answers = AnswerIndex.from_snapshot(snapshot, tuple(filter_splits))

    @property
    def num_entities(self) -> int:
        return len(self.keys)

    @property
    def candidates(self) -> np.ndarray:
        """Entity ids that can be answers: those with text to embed."""
        return np.flatnonzero(self.has_text)

    def entity(self, ref: str, param: str = "head") -> int:
        """The id of the entity whose key is ``ref``, else whose name is (case-insensitively)."""
        if ref in self.by_key:
            i = self.by_key[ref]
        else:
            found = self.by_name.get(ref.strip().casefold(), [])
            if not found:
                raise ApiError(404, f"unknown entity {ref!r}: no entity has this key or name", param=param,
                               code="unknown_entity")
            if len(found) > 1:
                shown = "; ".join(f"{self.keys[i]} ({self.texts[i][:60]})" for i in found[:_SHOWN])
                more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
                raise bad_request(f"entity name {ref!r} is ambiguous: {len(found)} entities have it; give a key "
                                  f"instead: {shown}{more}", param)
            i = found[0]
        if not self.has_text[i]:
            raise bad_request(f"entity {self.keys[i]!r} has no name or description to build a query from", param)
        return i

    def relation(self, ref: str, param: str = "relation") -> int:
        i = self.relation_by.get(ref, self.relation_by.get(ref.strip().casefold()))
        if i is None:
            known = ", ".join(self.relation_keys[:20]) + (" ..." if len(self.relation_keys) > 20 else "")
            raise ApiError(404, f"unknown relation {ref!r}; relations are: {known}", param=param,
                           code="unknown_relation")
        return i

    def query_text(self, entity: int, relation: int, inverse: bool) -> str:
        return query_text(self.texts[entity], self.relation_texts[relation], inverse)

    def known_answers(self, entity: int, relation: int, inverse: bool) -> np.ndarray:
        return self.answers.answers_of(entity, relation, inverse)

    def describe(self, entity: int) -> dict:
        return {"id": int(entity), "key": self.keys[entity], "name": self.names[entity],
                "description": self.descriptions[entity]}
