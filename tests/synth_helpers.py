"""Small real inputs for the synthesis tests: snapshots written in the real
format, QA JSONL, and path rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from kgscale.kg.snapshot import write_tables
from kgscale.output import write_manifest

# A toy commonsense graph: (head, relation, tail, split)
TOY_ENTITIES = ["bank", "vault", "building", "revolving door", "door", "library", "book", "publication", "magazine",
                "bookstore", "store", "money", "security", "guard", "room", "bank"]  # 15: a second "bank" (ambiguous)
TOY_RELATIONS = ["has part", "hypernym", "related to"]
TOY_TRIPLES = [
    ("bank", "has part", "vault", "train"),
    ("vault", "hypernym", "room", "train"),
    ("bank", "hypernym", "building", "train"),
    ("building", "has part", "door", "train"),
    ("revolving door", "hypernym", "door", "train"),
    ("library", "has part", "book", "train"),
    ("book", "hypernym", "publication", "train"),
    ("magazine", "hypernym", "publication", "train"),
    ("bookstore", "hypernym", "store", "train"),
    ("store", "related to", "book", "train"),
    ("bookstore", "related to", "book", "train"),
    ("bank", "related to", "money", "train"),
    ("security", "related to", "guard", "train"),
    ("guard", "related to", "bank", "train"),
    ("library", "hypernym", "building", "valid"),
    ("bookstore", "related to", "magazine", "test"),
]


def write_snapshot(directory: Path, entities: list[str], relations: list[str],
                   triples: list[tuple[int, int, int, str]], keys: list[str] | None = None) -> Path:
    """A snapshot directory in the real format (what `kgscale ingest` writes)."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = keys or [f"e{i}" for i in range(len(entities))]
    t = pa.table({
        "head": pa.array([x[0] for x in triples], pa.int32()),
        "relation": pa.array([x[1] for x in triples], pa.int32()),
        "tail": pa.array([x[2] for x in triples], pa.int32()),
        "split": pa.array([x[3] for x in triples], pa.string()),
    })
    ents = pa.table({"id": pa.array(range(len(entities)), pa.int32()), "key": keys, "name": entities,
                     "description": [None] * len(entities)})
    rels = pa.table({"id": pa.array(range(len(relations)), pa.int32()), "key": [f"/r/{i}" for i in range(len(relations))],
                     "text": relations})
    write_tables(directory, t, ents, rels)
    counts = {s: sum(x[3] == s for x in triples) for s in ("train", "valid", "test")}
    write_manifest(directory, "ingest", counts={"entities": len(entities), "relations": len(relations),
                                                "triples": counts, "triples_total": len(triples)})
    return directory


def toy_snapshot(directory: Path) -> Path:
    eid = {}
    for i, name in enumerate(TOY_ENTITIES):
        eid.setdefault(name, i)
    rid = {r: i for i, r in enumerate(TOY_RELATIONS)}
    triples = [(eid[h], rid[r], eid[t], s) for h, r, t, s in TOY_TRIPLES]
    return write_snapshot(directory, TOY_ENTITIES, TOY_RELATIONS, triples)


def random_snapshot(directory: Path, n: int = 120, relations: int = 5, train: int = 600, valid: int = 40, test: int = 40,
                    seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    seen, triples = set(), []
    for split, count in (("train", train), ("valid", valid), ("test", test)):
        while sum(x[3] == split for x in triples) < count:
            h, t = (int(x) for x in rng.integers(0, n, 2))
            r = int(rng.integers(0, relations))
            if h != t and (h, r, t) not in seen:
                seen.add((h, r, t))
                triples.append((h, r, t, split))
    return write_snapshot(directory, [f"entity {i}" for i in range(n)], [f"rel {j}" for j in range(relations)], triples)


def qa_line(question: str, choices: list[str], answer: int, **extra) -> str:
    labels = [chr(65 + i) for i in range(len(choices))]
    return json.dumps({"question": question, "choices": {"label": labels, "text": choices}, "answer": labels[answer], **extra})


TOY_QA = [
    qa_line("A revolving door is a security measure at a what?", ["bank", "library", "store"], 0, id="q-bank",
            question_concept="revolving door"),
    qa_line("Where would you find magazines along side many other printed works?", ["bookstore", "guard", "vault"], 0,
            id="q-magazine"),
    qa_line("Where do people keep their money safe?", ["vault", "door"], 0, id="q-money"),
]
