"""The path-mining stage as a plain function over a batch (no Ray)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kgscale.kg.snapshot import Snapshot
from kgscale.synth.mining import mine_table
from kgscale.synth.paths import SearchConfig
from kgscale.synth.shared_graph import Strings, build_shared_graph
from kgscale.synth.verbalise import format_facts, verbalise_rationale
from tests.synth_helpers import toy_snapshot


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return build_shared_graph(Snapshot(toy_snapshot(tmp_path_factory.mktemp("toy") / "snap")))


def batch(sources, targets):
    return pa.table({
        "question_id": [f"q{i}" for i in range(len(sources))],
        "source_entities": pa.array(sources, pa.list_(pa.int32())),
        "target_entities": pa.array(targets, pa.list_(pa.int32())),
    })


def test_paths_come_with_steps_directions_and_text(shared):
    # revolving door (3) to bank (0): 3 -hypernym-> door (4) <-has part- building (2) <-hypernym- bank (0)
    out = mine_table(batch([[3]], [[0]]), shared, SearchConfig()).to_pylist()[0]
    assert out["search_status"] == "ok" and out["num_paths"] == 1
    (p,) = out["paths"]
    assert p["entities"] == [3, 4, 2, 0]
    assert p["names"] == ["revolving door", "door", "building", "bank"]
    assert p["relation_texts"] == ["hypernym", "has part", "hypernym"]
    assert p["inverse"] == [False, True, True]
    assert p["hops"] == 3
    assert p["text"] == "revolving door --hypernym--> door <--has part-- building <--hypernym-- bank"
    assert format_facts([p]) == "- revolving door hypernym door\n- building has part door\n- bank hypernym building"


def test_training_graph_only_by_default(shared):
    # bookstore -> magazine is a test triple: not in the default (train) graph
    out = mine_table(batch([[9]], [[8]]), shared, SearchConfig(max_hops=1)).to_pylist()[0]
    assert out["num_paths"] == 0 and out["search_status"] == "ok"
    assert shared.splits == ("train",)


def test_questions_that_cannot_be_searched_say_why(shared):
    out = mine_table(batch([[], [3], [3, 999]], [[0], [], [0]]), shared, SearchConfig()).to_pylist()
    assert [r["search_status"] for r in out[:2]] == ["no question entity", "no answer entity"]
    assert out[2]["search_status"].startswith("entity id not in the graph")
    assert all(r["num_paths"] == 0 for r in out)


def test_several_sources_and_targets_and_top_k(shared):
    every = mine_table(batch([[3, 12]], [[0, 14]]), shared, SearchConfig(max_paths=0)).to_pylist()[0]
    assert [p["entities"] for p in every["paths"]] == [[12, 13, 0], [3, 4, 2, 0]]  # cheapest first
    assert [p["cost"] for p in every["paths"]] == [3.0, 5.0]  # hops + log2(degree) of inner nodes
    best = mine_table(batch([[3, 12]], [[0, 14]]), shared, SearchConfig(max_paths=1)).to_pylist()[0]
    assert best["num_paths"] == 1 and best["paths"][0]["entities"] == [12, 13, 0]


def test_verbaliser_states_each_step_as_its_triple(shared):
    out = mine_table(batch([[12]], [[0]]), shared, SearchConfig()).to_pylist()[0]
    text = verbalise_rationale("q", "bank", out["paths"])
    assert text == "security leads to bank: security related to guard; guard related to bank. So the answer is bank."


def test_strings_round_trip_without_python_objects():
    s = Strings.from_list(["a", "", "héllo", "x y"])
    assert len(s) == 4 and [s[i] for i in range(4)] == ["a", "", "héllo", "x y"]
    assert s.take(np.array([2, 0])).to_pylist() == ["héllo", "a"]
    assert isinstance(s.offsets, np.ndarray) and s.data.dtype == np.uint8
