"""KILM training samples from a snapshot: one row an entity in its
neighbourhood.

KILM infills entity descriptions in running text (Wikipedia in the paper).
Here the text comes from the KG: the entity's description is the knowledge to
infill, and its context is its verbalised neighbourhood, up to
``neighbours`` sentences "subject relation object." over edges of the
training graph, drawn at random (seeded, per entity) so that hubs do not
produce thousands of sentences. An entity without a description or without
an edge is rejected.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from kgscale.kg.graph import CSRGraph
from kgscale.kg.snapshot import ENTITIES, Snapshot
from kgscale.samples.rejects import SampleRejects


def neighbourhood_text(graph: CSRGraph, entity: int, names: np.ndarray, relations: np.ndarray, k: int,
                       rng: np.random.Generator) -> str:
    nb, rel, inv = graph.edges(entity)
    if len(nb) > k:
        pick = np.sort(rng.choice(len(nb), size=k, replace=False))
        nb, rel, inv = nb[pick], rel[pick], inv[pick]
    sentences = []
    for n, r, i in zip(nb, rel, inv):
        subject, obj = (names[n], names[entity]) if i else (names[entity], names[n])
        sentences.append(f"{subject} {relations[r]} {obj}.")
    return " ".join(sentences)


def kilm_samples(snapshot: Snapshot, neighbours: int = 4, seed: int = 0, rejects: SampleRejects | None = None) -> pa.Table:
    """Columns: ``entity_id``, ``name``, ``description``, ``context``."""
    graph = CSRGraph.from_snapshot(snapshot, ("train",))
    ents = snapshot.entities
    ids = ents["id"].to_numpy()
    names = np.empty(snapshot.num_entities, dtype=object)
    names[ids] = [(n or "").strip() for n in ents["name"].to_pylist()]
    descriptions = [(d or "").strip() for d in ents["description"].to_pylist()]
    relations = np.array(snapshot.relation_texts, dtype=object)
    degree = graph.degree()
    out: dict[str, list] = {"entity_id": [], "name": [], "description": [], "context": []}
    for row, (e, desc) in enumerate(zip(ids, descriptions)):
        reason = ("entity without a name or description" if not names[e] or not desc else
                  "entity without an edge in the training graph" if degree[e] == 0 else None)
        if reason:
            if rejects is not None:
                rejects.add(str(snapshot.path / ENTITIES), row, reason, int(e))
            continue
        rng = np.random.default_rng([seed, int(e)])
        out["entity_id"].append(int(e))
        out["name"].append(names[e])
        out["description"].append(desc)
        out["context"].append(neighbourhood_text(graph, int(e), names, relations, neighbours, rng))
    return pa.table({"entity_id": pa.array(out["entity_id"], pa.int64()),
                     **{k: pa.array(out[k], pa.string()) for k in ("name", "description", "context")}})
