"""k-hop questions from a KG: every answer, and splits that do not leak."""
from __future__ import annotations

import numpy as np
import pytest

from kgscale.kg.graph import CSRGraph
from kgscale.kg.snapshot import Snapshot
from kgscale.synth.questions_kg import KGQuestionsConfig, Step, follow, synthesise, verbalise_question
from tests.synth_helpers import random_snapshot


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory):
    snap = Snapshot(random_snapshot(tmp_path_factory.mktemp("kgq") / "snap", n=80, relations=4, train=400, valid=60, test=60))
    table, stats = synthesise(snap, KGQuestionsConfig(hops=2, train=60, valid=12, test=12, max_answers=50, seed=1))
    return snap, table.to_pylist(), stats


def triple_set(snap, splits):
    t = snap.triples(splits)
    return set(zip(t["head"].to_pylist(), t["relation"].to_pylist(), t["tail"].to_pylist()))


def walk_triples(q):
    nodes, rels, inv = q["walk_entities"], q["relation_path"], q["relation_inverse"]
    return [(nodes[i + 1], r, nodes[i]) if v else (nodes[i], r, nodes[i + 1]) for i, (r, v) in enumerate(zip(rels, inv))]


def test_counts_per_split_and_shape(synthesised):
    _, rows, stats = synthesised
    by_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "test")}
    assert by_split == {"train": 60, "valid": 12, "test": 12}
    assert {s: stats[s]["kept"] for s in by_split} == by_split
    for r in rows:
        assert r["hops"] == 2 and len(r["walk_entities"]) == 3 and len(set(r["walk_entities"])) == 3
        assert r["source_entities"] == [r["walk_entities"][0]]
        assert r["answers"] and r["answer"] == "; ".join(r["answers"])


def test_answers_are_every_entity_the_graph_reaches(synthesised):
    snap, rows, _ = synthesised
    graphs = {"train": ("train",), "valid": ("train", "valid"), "test": ("train", "valid", "test")}
    built = {s: CSRGraph.from_snapshot(snap, g) for s, g in graphs.items()}
    for r in rows:
        steps = [Step(a, b) for a, b in zip(r["relation_path"], r["relation_inverse"])]
        reach = follow(built[r["split"]], np.array(r["source_entities"]), steps)
        assert sorted(r["target_entities"]) == sorted(set(reach.tolist()) - set(r["source_entities"]))
        assert r["walk_entities"][-1] in r["target_entities"]  # the sampled walk is one way to an answer


def test_held_out_questions_rest_on_their_triple_and_training_never_sees_it(synthesised):
    snap, rows, _ = synthesised
    train = triple_set(snap, "train")
    all_triples = snap.triples()
    held = {}
    for r in rows:
        steps = walk_triples(r)
        if r["split"] == "train":
            assert all(t in train for t in steps)  # training walks use training triples only
            assert r["rests_on_triple"] == -1
            continue
        row = all_triples.slice(r["rests_on_triple"], 1).to_pylist()[0]
        assert row["split"] == r["split"]
        held_triple = (row["head"], row["relation"], row["tail"])
        assert held_triple in steps and all(t in train for t in steps if t != held_triple)
        held[(r["source_entities"][0], tuple(r["relation_path"]), tuple(r["relation_inverse"]))] = r["split"]
        # at least one answer needs the held-out triple
        base = ("train",) if r["split"] == "valid" else ("train", "valid")
        step_objs = [Step(a, b) for a, b in zip(r["relation_path"], r["relation_inverse"])]
        old = follow(CSRGraph.from_snapshot(snap, base), np.array(r["source_entities"]), step_objs)
        assert not set(r["target_entities"]) <= set(old.tolist())
    for r in rows:
        if r["split"] == "train":
            key = (r["source_entities"][0], tuple(r["relation_path"]), tuple(r["relation_inverse"]))
            assert key not in held  # a held-out question is never also a training question


def test_verbalisation_uses_relation_texts_and_directions():
    texts = ["capital of", "located in"]
    assert verbalise_question("Paris", [Step(0, False)], texts) == 'What is the "capital of" of Paris?'
    q = verbalise_question("Paris", [Step(0, False), Step(1, True)], texts)
    assert q == 'What has the "capital of" of Paris as its "located in"?'


def test_hops_are_validated():
    with pytest.raises(ValueError, match="hops"):
        KGQuestionsConfig(hops=4)
