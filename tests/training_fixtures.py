"""Small inputs for the training tests: snapshots written directly (no Ray
ingest), a slice of real WN18RR, and a rationales file as the KALE synthesis
stage writes it."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.kg.snapshot import write_tables
from kgscale.output import write_manifest

ANIMALS = [
    ("dog", "a domesticated carnivorous mammal that barks"),
    ("cat", "a small domesticated feline that purrs"),
    ("mammal", "a warm-blooded vertebrate animal that nurses its young"),
    ("animal", "a living organism that feeds on organic matter"),
    ("wolf", "a wild carnivorous mammal of the dog family"),
    ("lion", "a large tawny wild cat of Africa"),
    ("tail", "the posterior part of an animal"),
    ("fur", "the dense coat of hair of a mammal"),
    ("feline", "any member of the cat family"),
    ("canine", "any member of the dog family"),
    ("pet", "a domesticated animal kept for companionship"),
    ("predator", "an animal that hunts other animals for food"),
]
RELATIONS = ["hypernym", "has part", "similar to", "member of"]
# (head, relation, tail, split) over ANIMALS / RELATIONS indices
TRIPLES = [
    (0, 0, 9, "train"), (1, 0, 8, "train"), (9, 0, 2, "train"), (8, 0, 2, "train"), (2, 0, 3, "train"),
    (4, 0, 9, "train"), (5, 0, 8, "train"), (0, 1, 6, "train"), (1, 1, 6, "train"), (0, 1, 7, "train"),
    (1, 1, 7, "train"), (0, 2, 4, "train"), (1, 2, 5, "train"), (0, 3, 10, "train"), (1, 3, 10, "train"),
    (4, 3, 11, "train"), (5, 3, 11, "train"), (2, 1, 7, "train"), (4, 1, 6, "train"), (5, 1, 6, "train"),
    (4, 2, 0, "valid"), (5, 2, 1, "test"),
]


def write_snapshot(out: Path, triples, entities, relations) -> Path:
    """A snapshot directory from (head, rel, tail, split) ids, (name, description)
    entities and relation texts."""
    out.mkdir(parents=True, exist_ok=True)
    t = pa.table({"head": [h for h, _, _, _ in triples], "relation": [r for _, r, _, _ in triples],
                  "tail": [x for _, _, x, _ in triples], "split": [s for *_, s in triples]})
    e = pa.table({"id": list(range(len(entities))), "key": [f"e{i}" for i in range(len(entities))],
                  "name": [n for n, _ in entities], "description": [d for _, d in entities]})
    r = pa.table({"id": list(range(len(relations))), "key": [f"_{x.replace(' ', '_')}" for x in relations],
                  "text": list(relations)})
    write_tables(out, t, e, r)
    counts = {s: sum(1 for *_, x in triples if x == s) for s in ("train", "valid", "test")}
    write_manifest(out, "ingest", counts={"entities": len(entities), "relations": len(relations), "triples": counts})
    return out


def tiny_snapshot(out: Path) -> Path:
    return write_snapshot(out, TRIPLES, ANIMALS, RELATIONS)


def wn18rr_slice(shared: Path, out: Path, n: int = 400, test: int = 0) -> Path:
    """The first ``n`` training triples of WN18RR with their entities' real names
    and glosses (valid/test left out), written as a snapshot; the last ``test``
    of them go to its test split instead."""
    root = shared / "wn18rr"
    ents = {}
    for line in (root / "entities.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        ents[parts[0]] = (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
    rels = {}
    for line in (root / "relations.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        key, text = line.split("\t")[:2]
        rels[key] = text
    rows = [line.split("\t") for line in (root / "train.txt").read_text().splitlines()[:n]]
    ent_ids: dict[str, int] = {}
    rel_ids: dict[str, int] = {}
    triples = []
    for h, r, t in rows:
        for key in (h, t):
            ent_ids.setdefault(key, len(ent_ids))
        rel_ids.setdefault(r, len(rel_ids))
        triples.append((ent_ids[h], rel_ids[r], ent_ids[t], "test" if len(triples) >= n - test else "train"))
    entities = [ents.get(k, (k, "")) for k in ent_ids]
    relations = [rels.get(k, k.strip("_").replace("_", " ")) for k in rel_ids]
    return write_snapshot(out, triples, entities, relations)


def write_rationales(out: Path, rows: list[dict] | None = None) -> Path:
    """``rationales.parquet`` with the columns the KALE synthesis stage writes."""
    rows = rows if rows is not None else [
        {"question_id": f"q{i}", "question": f"Which family does the {a} belong to?",
         "answer": b, "rationale": f"{a} hypernym {b}. A {a} is {d}.", "choices": [b, "fish", "bird"],
         "flagged": i == 3}
        for i, (a, b, d) in enumerate([("dog", "canine", ANIMALS[0][1]), ("cat", "feline", ANIMALS[1][1]),
                                        ("wolf", "canine", ANIMALS[4][1]), ("lion", "feline", ANIMALS[5][1]),
                                        ("canine", "mammal", ANIMALS[9][1]), ("feline", "mammal", ANIMALS[8][1]),
                                        ("mammal", "animal", ANIMALS[2][1]), ("pet", "animal", ANIMALS[10][1]),
                                        ("fur", "mammal", ANIMALS[7][1])])
    ]
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("question_id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                        ("rationale", pa.string()), ("choices", pa.list_(pa.string())), ("flagged", pa.bool_())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "rationales.parquet")
    return out
