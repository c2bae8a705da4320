"""k-hop questions synthesised from a KG, with leak-free splits.

A question is a start entity and a relation path (each step a relation and a
direction), sampled as a random walk without repeated entities and
verbalised with the relation texts::

    1 hop:  What is the "r1" of X?              (X, r1, ?)
    2 hops: What is the "r2" of the "r1" of X?  ((X, r1, y), (y, r2, ?))
    inverse steps read "... that has X as its "r"".

Its answers are *every* entity the graph reaches from the start along that
relation path (not only the walk's end), the start itself excepted (a
question whose answer is its own subject is degenerate).

Splits, so that nothing a model trains on gives a test answer away:

- train: walks over the training triples only; answers from the training graph.
- valid: one step of the walk is a validation triple, the others training
  triples; answers from train + valid, and at least one of them must be out
  of reach of the training graph alone (the question rests on the triple).
- test: the same with a test triple; answers from train + valid + test.

A (start, relation path) that is a valid or test question is never also a
training question, and no training walk uses a valid or test triple.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pydantic import Field

from kgscale.config import StrictModel
from kgscale.kg.graph import CSRGraph
from kgscale.kg.snapshot import Snapshot


class KGQuestionsConfig(StrictModel):
    # hops of every question
    hops: int = Field(2, ge=1, le=3)
    # questions wanted per split (fewer come out when the graph cannot give them)
    train: int = Field(2000, ge=0)
    valid: int = Field(200, ge=0)
    test: int = Field(200, ge=0)
    # a question with more answers than this is too vague to keep
    max_answers: int = Field(10, ge=1)
    # walks tried per question wanted before giving up
    attempts_per_question: int = Field(20, ge=1)
    seed: int = 0


@dataclass
class Step:
    relation: int
    inverse: bool


def follow(graph: CSRGraph, starts: np.ndarray, steps: list[Step]) -> np.ndarray:
    """Every entity reached from ``starts`` along the relation path (sorted, unique)."""
    frontier = np.unique(np.asarray(starts, dtype=np.int64))
    for step in steps:
        if len(frontier) == 0:
            break
        lo, hi = graph.indptr[frontier], graph.indptr[frontier + 1]
        sizes = hi - lo
        idx = np.repeat(lo - np.cumsum(np.concatenate([[0], sizes[:-1]])), sizes) + np.arange(sizes.sum())
        keep = (graph.relation[idx] == step.relation) & (graph.inverse[idx] == step.inverse)
        frontier = np.unique(graph.neighbor[idx[keep]].astype(np.int64))
    return frontier


def verbalise_question(start_name: str, steps: list[Step], relation_texts: list[str]) -> str:
    phrase = start_name
    for i, step in enumerate(steps):
        r = f'"{relation_texts[step.relation]}"'  # quoted: KG relation texts are rarely fluent English
        if step.inverse:
            phrase = f"the entity that has {phrase} as its {r}" if i < len(steps) - 1 else f"What has {phrase} as its {r}?"
        else:
            phrase = f"the {r} of {phrase}" if i < len(steps) - 1 else f"What is the {r} of {phrase}?"
    return phrase


class _Walker:
    def __init__(self, graph: CSRGraph, rng: np.random.Generator) -> None:
        self.g = graph
        self.rng = rng

    def step_from(self, node: int, avoid: set[int]) -> tuple[int, Step] | None:
        """A random edge out of ``node`` to an entity not in ``avoid``."""
        a, b = self.g.indptr[node], self.g.indptr[node + 1]
        if b == a:
            return None
        for _ in range(4):
            e = int(self.rng.integers(a, b))
            v = int(self.g.neighbor[e])
            if v not in avoid:
                return v, Step(int(self.g.relation[e]), bool(self.g.inverse[e]))
        return None

    def extend(self, nodes: list[int], steps: list[Step], forward: int, backward: int) -> bool:
        """Grow a walk ``forward`` steps at its end and ``backward`` steps before its start."""
        for _ in range(forward):
            got = self.step_from(nodes[-1], set(nodes))
            if got is None:
                return False
            nodes.append(got[0])
            steps.append(got[1])
        for _ in range(backward):
            # an edge x <- nodes[0] seen from nodes[0]; the walk steps x -> nodes[0] the other way
            got = self.step_from(nodes[0], set(nodes))
            if got is None:
                return False
            nodes.insert(0, got[0])
            steps.insert(0, Step(got[1].relation, not got[1].inverse))
        return True


def synthesise(snapshot: Snapshot, cfg: KGQuestionsConfig) -> tuple[pa.Table, dict]:
    """The questions of every split, and counts of what was tried and dropped."""
    rng = np.random.default_rng(cfg.seed)
    g_train = CSRGraph.from_snapshot(snapshot, ("train",))
    g_tv = CSRGraph.from_snapshot(snapshot, ("train", "valid"))
    g_all = CSRGraph.from_snapshot(snapshot, ("train", "valid", "test"))
    ents = snapshot.entities.sort_by("id")
    names = [n or k for n, k in zip(ents["name"].to_pylist(), ents["key"].to_pylist())]
    rels = snapshot.relations.sort_by("id")
    rel_texts = [t or k for t, k in zip(rels["text"].to_pylist(), rels["key"].to_pylist())]
    walker = _Walker(g_train, rng)
    seen: set[tuple] = set()
    rows: list[dict] = []
    stats: dict[str, dict[str, int]] = {}

    def consider(split: str, nodes: list[int], steps: list[Step], answer_graph: CSRGraph, base_graph: CSRGraph | None,
                 counts: dict[str, int], rests_on: int) -> bool:
        key = (nodes[0], tuple((s.relation, s.inverse) for s in steps))
        if key in seen:
            counts["duplicate"] += 1
            return False
        answers = follow(answer_graph, np.array([nodes[0]]), steps)
        answers = answers[answers != nodes[0]]
        if len(answers) == 0:
            counts["only answer is the start"] += 1
            return False
        if len(answers) > cfg.max_answers:
            counts["too many answers"] += 1
            return False
        if base_graph is not None:
            old = follow(base_graph, np.array([nodes[0]]), steps)
            if np.isin(answers, old).all():
                counts["answerable without the held-out triple"] += 1
                return False
        seen.add(key)
        answer_names = [names[a] for a in answers]
        rows.append({
            "question_id": f"kg-{split}-{counts['kept']}",
            "question": verbalise_question(names[nodes[0]], steps, rel_texts),
            "choices": [],
            "answer": "; ".join(answer_names),
            "answers": answer_names,
            "source_entities": [nodes[0]],
            "target_entities": answers.astype(np.int32).tolist(),
            "source_mentions": [names[nodes[0]]],
            "split": split,
            "origin": "kg",
            "hops": len(steps),
            "relation_path": [s.relation for s in steps],
            "relation_inverse": [s.inverse for s in steps],
            "walk_entities": nodes,
            "rests_on_triple": rests_on,
        })
        return True

    # held-out splits first: they take precedence over training questions
    triples = snapshot.triples()
    all_split = np.asarray(triples["split"].to_pylist())
    heads, rels_, tails = (triples[c].to_numpy() for c in ("head", "relation", "tail"))
    for split, want, answer_graph, base_graph in (("test", cfg.test, g_all, g_tv), ("valid", cfg.valid, g_tv, g_train)):
        counts = stats.setdefault(split, _zero_counts())
        rows_of_split = np.flatnonzero(all_split == split)
        if want == 0 or len(rows_of_split) == 0:
            continue
        for _ in range(want * cfg.attempts_per_question):
            if counts["kept"] >= want:
                break
            counts["tried"] += 1
            t = int(rng.choice(rows_of_split))
            h, r, tl = int(heads[t]), int(rels_[t]), int(tails[t])
            if h == tl:
                counts["no walk"] += 1
                continue
            inverse = bool(rng.integers(0, 2))
            nodes = [tl, h] if inverse else [h, tl]
            steps = [Step(r, inverse)]
            before = int(rng.integers(0, cfg.hops))
            if not walker.extend(nodes, steps, cfg.hops - 1 - before, before):
                counts["no walk"] += 1
                continue
            counts["kept"] += consider(split, nodes, steps, answer_graph, base_graph, counts, t)
    counts = stats.setdefault("train", _zero_counts())
    active = np.flatnonzero(g_train.degree() > 0)
    for _ in range(cfg.train * cfg.attempts_per_question):
        if counts["kept"] >= cfg.train or len(active) == 0:
            break
        counts["tried"] += 1
        nodes, steps = [int(rng.choice(active))], []
        if not walker.extend(nodes, steps, cfg.hops, 0):
            counts["no walk"] += 1
            continue
        counts["kept"] += consider("train", nodes, steps, g_train, None, counts, -1)
    table = pa.Table.from_pylist(rows, schema=KG_QUESTIONS_SCHEMA) if rows else KG_QUESTIONS_SCHEMA.empty_table()
    return table, stats


def _zero_counts() -> dict[str, int]:
    return {"tried": 0, "kept": 0, "no walk": 0, "duplicate": 0, "only answer is the start": 0, "too many answers": 0,
            "answerable without the held-out triple": 0}


def _schema() -> pa.Schema:
    from kgscale.synth.schema import QUESTION_FIELDS

    return pa.schema(QUESTION_FIELDS + [
        ("hops", pa.int8()),
        ("relation_path", pa.list_(pa.int32())),
        ("relation_inverse", pa.list_(pa.bool_())),
        ("walk_entities", pa.list_(pa.int32())),  # the sampled walk (one path to an answer)
        ("rests_on_triple", pa.int64()),  # row of the valid/test triple in triples.parquet; -1 for train
    ])


KG_QUESTIONS_SCHEMA = _schema()
