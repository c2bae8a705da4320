from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kgscale.kg.snapshot import Snapshot
from kgscale.samples.kale import RationalesError, kale_samples
from kgscale.kg.answers import query_keys
from kgscale.samples.kalm import kalm_samples, known_pair_keys
from kgscale.samples.kilm import kilm_samples
from kgscale.samples.rejects import RejectedSampleError, SampleRejects
from tests.training_fixtures import ANIMALS, RELATIONS, TRIPLES, tiny_snapshot, write_rationales, write_snapshot


@pytest.fixture()
def snap(tmp_path) -> Snapshot:
    return Snapshot(tiny_snapshot(tmp_path / "snap"))


def test_kalm_samples_both_directions(snap):
    table = kalm_samples(snap, "train", inverse=True)
    train = [t for t in TRIPLES if t[3] == "train"]
    assert table.num_rows == 2 * len(train)
    row = table.slice(0, 1).to_pylist()[0]
    h, r, t, _ = train[0]
    assert row["entity_text"] == f"{ANIMALS[h][0]}: {ANIMALS[h][1]}"
    assert row["relation_text"] == RELATIONS[r] and row["inverse"] is False
    assert row["answer_text"] == f"{ANIMALS[t][0]}: {ANIMALS[t][1]}"
    assert row["query_id"] == h * 2 * len(RELATIONS) + 2 * r and row["answer_id"] == t
    inv = table.slice(len(train), 1).to_pylist()[0]
    assert inv["inverse"] is True and inv["answer_id"] == h
    assert inv["query_id"] == t * 2 * len(RELATIONS) + 2 * r + 1
    assert kalm_samples(snap, "train", inverse=False).num_rows == len(train)


def test_known_pairs_cover_every_training_pair(snap):
    keys = known_pair_keys(snap, ("train",), inverse=True)
    table = kalm_samples(snap, "train", inverse=True)
    pairs = table["query_id"].to_numpy() * len(ANIMALS) + table["answer_id"].to_numpy()
    assert np.isin(pairs, keys).all()
    assert (np.diff(keys) > 0).all()
    # a valid triple is not among them
    h, r, t, _ = next(x for x in TRIPLES if x[3] == "valid")
    key = int(query_keys(np.array([h]), np.array([r]), np.array([False]), len(RELATIONS))[0]) * len(ANIMALS) + t
    assert key not in set(keys.tolist())


def test_kalm_rejects_entities_without_text(tmp_path):
    ents = ANIMALS[:3] + [("", "")]
    snap = Snapshot(write_snapshot(tmp_path / "s", [(0, 0, 1, "train"), (1, 0, 3, "train"), (2, 0, 0, "train")],
                                   ents, RELATIONS))
    rejects = SampleRejects()
    table = kalm_samples(snap, "train", inverse=False, rejects=rejects)
    assert table.num_rows == 2
    assert rejects.summary() == {"total": 1, "by_reason": {"entity without name or description": 1}}
    assert rejects.rows[0]["row"] == 1 and rejects.rows[0]["source"].endswith("triples.parquet")
    with pytest.raises(RejectedSampleError, match="row 1"):
        kalm_samples(snap, "train", inverse=False, rejects=SampleRejects(strict=True))


def test_kale_samples_skip_and_count_flagged(tmp_path):
    path = write_rationales(tmp_path / "r")
    rejects = SampleRejects()
    table = kale_samples(path, skip_flagged=True, rejects=rejects)
    assert table.num_rows == 8 and rejects.summary()["total"] == 1
    assert rejects.rows[0]["id"] == "q3" and "flagged" in rejects.rows[0]["reason"]
    row = table.to_pylist()[0]
    assert row["question"].startswith("Which family does the dog belong to?\nA. canine\nB. fish\nC. bird\n")
    assert row["answer"] == "canine" and row["rationale"].startswith("dog hypernym canine.")
    assert kale_samples(path, skip_flagged=False).num_rows == 9


def test_kale_samples_bad_input(tmp_path):
    with pytest.raises(RationalesError, match="rationales.parquet"):
        kale_samples(tmp_path / "nowhere")
    tmp_path.joinpath("bad").mkdir()
    pq.write_table(pa.table({"question_id": ["a"], "question": ["q"]}), tmp_path / "bad" / "rationales.parquet")
    with pytest.raises(RationalesError, match="answer, rationale"):
        kale_samples(tmp_path / "bad")
    rows = [{"question_id": "x", "question": "q?", "answer": "", "rationale": "r", "choices": [], "flagged": False}]
    rejects = SampleRejects()
    assert kale_samples(write_rationales(tmp_path / "empty", rows), rejects=rejects).num_rows == 0
    assert rejects.summary()["by_reason"] == {"empty answer": 1}


def test_kilm_samples_verbalise_the_neighbourhood(snap):
    rejects = SampleRejects()
    table = kilm_samples(snap, neighbours=2, seed=0, rejects=rejects)
    rows = {r["name"]: r for r in table.to_pylist()}
    assert rows["dog"]["description"] == ANIMALS[0][1]
    sentences = [s for s in rows["dog"]["context"].split(".") if s.strip()]
    assert len(sentences) == 2  # dog has 5 edges, capped at 2
    train_facts = {f"{ANIMALS[h][0]} {RELATIONS[r]} {ANIMALS[t][0]}" for h, r, t, s in TRIPLES if s == "train"}
    assert all(s.strip() in train_facts for s in sentences)
    assert table == kilm_samples(snap, neighbours=2, seed=0)  # deterministic
    assert rejects.summary()["total"] == 0


def test_kilm_rejects_entities_without_description_or_edges(tmp_path):
    ents = [("dog", "a dog"), ("cat", ""), ("fish", "a fish")]
    snap = Snapshot(write_snapshot(tmp_path / "s", [(0, 0, 1, "train")], ents, RELATIONS))
    rejects = SampleRejects()
    table = kilm_samples(snap, rejects=rejects)
    assert table["name"].to_pylist() == ["dog"]
    assert rejects.summary()["by_reason"] == {"entity without a name or description": 1,
                                              "entity without an edge in the training graph": 1}


def _mc_file(path, ids):
    import json

    rows = [{"id": i, "question": f"Which family does the {a} belong to?", "answer": "A",
             "choices": {"label": ["A", "B", "C"], "text": [b, "fish", "bird"]}}
            for i, (a, b) in zip(ids, [("dog", "canine"), ("cat", "feline"), ("wolf", "canine"), ("lion", "feline"),
                                      ("canine", "mammal"), ("owl", "bird")])]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    return path


def test_kale_samples_from_questions_add_rationales_where_usable(tmp_path):
    """Every question of the QA file in the part trains; a usable rationale is
    joined on the id, a flagged one or none leaves the rationale empty."""
    from kgscale.kg.qa_parts import in_part

    ids = ["q0", "q1", "q2", "q3", "q4", "z9"]  # z9 has no rationale at all
    qa = _mc_file(tmp_path / "qa.jsonl", ids)
    rejects = SampleRejects()
    table = kale_samples(write_rationales(tmp_path / "r"), True, rejects, [qa], "all")
    rows = {r["question_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ids
    assert rows["q0"]["rationale"].startswith("dog hypernym canine.") and rows["q0"]["answer"] == "canine"
    assert rows["q3"]["rationale"] == "" and rows["z9"]["rationale"] == ""  # flagged; never had one
    assert rows["z9"]["question"] == "Which family does the owl belong to?\nA. bird\nB. fish\nC. bird\n"
    assert rejects.summary()["total"] == 2  # the flagged rationale and the line that is not JSON
    train = kale_samples(None, True, None, [qa], "train")
    assert sorted(train["question_id"].to_pylist()) == [i for i in ids if in_part(i, "train")]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(RationalesError, match="no questions"):
        kale_samples(None, True, None, [tmp_path / "empty.jsonl"], "all")
    with pytest.raises(RationalesError, match="data.rationales"):
        kale_samples(None)
