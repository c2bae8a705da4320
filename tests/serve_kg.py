"""A small KG snapshot for the serving tests, written directly (no Ray
Data ingest: serving tests only read it)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from kgscale.kg.snapshot import write_tables
from kgscale.output import atomic_dir, write_manifest

# key, name, description; "stool" names two entities on purpose (ambiguous name)
ENTITIES = [
    ("e1", "dog", "a domesticated canine"),
    ("e2", "cat", "a small domesticated feline"),
    ("e3", "animal", "a living organism that moves"),
    ("e4", "mammal", "a warm-blooded vertebrate"),
    ("e5", "paris", "the capital of france"),
    ("e6", "france", "a country in europe"),
    ("e7", "stool", "a seat without a back"),
    ("e8", "stool", "solid excretory product"),
]
RELATIONS = [("capital_of", "capital of"), ("hypernym", "is a kind of")]
# (head, relation, tail, split) by key
TRIPLES = [("e1", "hypernym", "e4", "train"), ("e2", "hypernym", "e4", "train"), ("e4", "hypernym", "e3", "train"),
           ("e5", "capital_of", "e6", "train"), ("e7", "hypernym", "e3", "valid"), ("e1", "hypernym", "e3", "test")]


def write_snapshot(out: Path) -> Path:
    ent = {k: i for i, (k, _, _) in enumerate(ENTITIES)}
    rel = {k: i for i, (k, _) in enumerate(RELATIONS)}
    order = {"train": 0, "valid": 1, "test": 2}
    rows = sorted(TRIPLES, key=lambda t: (order[t[3]], ent[t[0]], rel[t[1]], ent[t[2]]))
    with atomic_dir(out) as tmp:
        write_tables(
            tmp,
            pa.table({"head": [ent[h] for h, _, _, _ in rows], "relation": [rel[r] for _, r, _, _ in rows],
                      "tail": [ent[t] for _, _, t, _ in rows], "split": [s for *_, s in rows]}),
            pa.table({"id": list(range(len(ENTITIES))), "key": [e[0] for e in ENTITIES],
                      "name": [e[1] for e in ENTITIES], "description": [e[2] for e in ENTITIES]}),
            pa.table({"id": list(range(len(RELATIONS))), "key": [r[0] for r in RELATIONS],
                      "text": [r[1] for r in RELATIONS]}),
        )
        write_manifest(tmp, "ingest", source={"type": "test"},
                       counts={"entities": len(ENTITIES), "relations": len(RELATIONS),
                               "triples": {s: sum(t[3] == s for t in TRIPLES) for s in order}})
    return out
