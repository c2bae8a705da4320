"""The synthesis stages on the session's local Ray, through the real CLI."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from kgscale.cli import main
from kgscale.kg.snapshot import Snapshot
from kgscale.synth.mining import mine_table
from kgscale.synth.paths import SearchConfig
from kgscale.synth.rationales import RationalesConfig, run_rationales
from kgscale.synth.shared_graph import build_shared_graph, put_shared_graph
from kgscale.synth.teacher import TeacherConfig
from tests.chat_server import ChatServer
from tests.synth_helpers import TOY_QA, qa_line, random_snapshot, toy_snapshot

pytestmark = pytest.mark.ray


@ray.remote
def _inspect(refs):
    shared = ray.get(refs[0])
    arrays = [shared.graph.indptr, shared.graph.neighbor, shared.index.pref, shared.index.twin, shared.entity_names.data]
    return [a.flags.writeable for a in arrays], shared.entity_names[0]


def test_graph_is_put_once_and_mapped_read_only_by_workers(tmp_path):
    shared = build_shared_graph(Snapshot(toy_snapshot(tmp_path / "snap")))
    ref = put_shared_graph(shared)
    writeable, name = ray.get(_inspect.remote([ref]))
    # read-only arrays are views of the object store's shared memory, not copies
    assert writeable == [False] * 5 and name == "bank"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_qa_questions_to_paths_to_rationales_through_the_cli(tmp_path, capsys):
    snap = toy_snapshot(tmp_path / "snap")
    qa = tmp_path / "toy.validation.jsonl"
    bad = [
        '{"question": "no choices here", "answer": "A"}',  # line 4
        "not json at all",  # line 5
        qa_line("What is it?", ["bank", "mall"], 0, id="q-nothing"),  # line 6: links to nothing
    ]
    qa.write_text("\n".join(TOY_QA + bad) + "\n")
    common = ["ray.progress_bars=false"]
    assert main(["questions", str(qa), "--snapshot", str(snap), "--out", str(tmp_path / "q"), "questions.workers=1",
                 "questions.batch_size=2", *common]) == 0
    assert "3 questions written" in capsys.readouterr().out
    q_manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert q_manifest["linking"]["rows"] == 6 and q_manifest["linking"]["questions"] == 4
    assert q_manifest["linking"]["question_linked"] == 0.75
    rejects = read_jsonl(tmp_path / "q" / "rejects.jsonl")
    assert [(r["where"], r["reason"].split(":")[0]) for r in rejects] == [
        ("line 4", "missing field"), ("line 5", "not valid JSON"), ("line 6", "question links to no entity")]
    questions = pq.read_table(tmp_path / "q" / "questions.parquet").to_pylist()
    assert [q["question_id"] for q in questions] == ["q-bank", "q-magazine", "q-money"]
    assert all(q["split"] == "validation" for q in questions)

    assert main(["paths", str(tmp_path / "q"), "--snapshot", str(snap), "--out", str(tmp_path / "p"),
                 "paths.workers=2", "paths.batch_size=1", *common]) == 0
    paths = {r["question_id"]: r for r in pq.read_table(tmp_path / "p" / "paths.parquet").to_pylist()}
    assert set(paths) == {"q-bank", "q-magazine", "q-money"}
    assert "revolving door --hypernym--> door <--has part-- building <--hypernym-- bank" in [
        p["text"] for p in paths["q-bank"]["paths"]]
    # bookstore -> magazine is a test triple; the training graph still links them through book
    assert "magazine --hypernym--> publication <--hypernym-- book <--related to-- bookstore" in [
        p["text"] for p in paths["q-magazine"]["paths"]]
    p_manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert p_manifest["counts"]["questions_searched"] == 3 and p_manifest["graph"]["splits"] == ["train"]

    assert main(["rationales", str(tmp_path / "p"), "--out", str(tmp_path / "r"), *common]) == 0
    table = pq.read_table(tmp_path / "r" / "rationales.parquet")
    # the contract the training stage reads
    for col, typ in [("question_id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                     ("rationale", pa.string()), ("teacher", pa.string()), ("prompt_sha256", pa.string()),
                     ("choices", pa.list_(pa.string())), ("flagged", pa.bool_())]:
        assert table.schema.field(col).type == typ
    rows = {r["question_id"]: r for r in table.to_pylist()}
    with_paths = {k for k, r in paths.items() if r["num_paths"]}
    assert set(rows) == with_paths
    assert all(r["teacher"] == "verbaliser" and not r["flagged"] and len(r["prompt_sha256"]) == 64 for r in rows.values())
    assert rows["q-bank"]["choices"] == ["bank", "library", "store"] and rows["q-bank"]["answer"] == "bank"
    assert "Wrote" in capsys.readouterr().out


def test_strict_makes_the_first_bad_row_fatal(tmp_path, capsys):
    snap = toy_snapshot(tmp_path / "snap")
    qa = tmp_path / "bad.jsonl"
    qa.write_text(TOY_QA[0] + "\n{broken\n")
    rc = main(["questions", str(qa), "--snapshot", str(snap), "--out", str(tmp_path / "q"), "--strict",
               "ray.progress_bars=false"])
    assert rc == 2
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "q").exists()


def test_kg_questions_are_mined_per_split(tmp_path, capsys):
    snap = random_snapshot(tmp_path / "snap", n=60, relations=3, train=300, valid=40, test=40)
    # a stage's sub-sections are spelled as in a `kgscale run` config; the old top-level spelling names the new one
    assert main(["questions", "kg", "--snapshot", str(snap), "--out", str(tmp_path / "q"), "kg.hops=2"]) == 2
    assert "kg: is now spelled questions.kg" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["questions", "kg", "--snapshot", str(snap), "--out", str(tmp_path / "q"), "questions.kg.hops=2",
                 "questions.kg.train=20", "questions.kg.valid=5", "questions.kg.test=5",
                 "questions.kg.max_answers=50"]) == 0
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["counts"]["by_split"] == {"train": 20, "valid": 5, "test": 5}
    assert main(["paths", str(tmp_path / "q"), "--snapshot", str(snap), "--out", str(tmp_path / "p"),
                 "paths.graph_splits=[train,valid,test]", "paths.search.max_hops=2", "ray.progress_bars=false"]) == 0
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["config"]["paths"]["search"]["max_hops"] == 2
    rows = pq.read_table(tmp_path / "p" / "paths.parquet").to_pylist()
    # over the full graph every question's own walk is a path of at most 2 hops
    for r in rows:
        assert r["num_paths"] >= 1
    capsys.readouterr()


def test_http_teacher_in_an_actor_pool_records_failures_and_flags(tmp_path):
    snap = Snapshot(toy_snapshot(tmp_path / "snap"))
    shared = build_shared_graph(snap)
    qs = ["plain", "flaky [[500x2]]", "down [[always500]]", "slow [[slow]]", "vague [[noentity]]"]
    batch = pa.table({
        "question_id": [f"q{i}" for i in range(len(qs))],
        "question": qs,
        "answer": ["bank"] * len(qs),
        "choices": pa.array([["bank", "mall"]] * len(qs), pa.list_(pa.string())),
        "source_entities": pa.array([[3]] * len(qs), pa.list_(pa.int32())),
        "target_entities": pa.array([[0]] * len(qs), pa.list_(pa.int32())),
    })
    mined = mine_table(batch, shared, SearchConfig())
    (tmp_path / "p").mkdir()
    pq.write_table(mined, tmp_path / "p" / "paths.parquet")
    with ChatServer(slow_s=1.5) as server:
        teacher = TeacherConfig(kind="openai", model="t", base_url=server.base_url, timeout_s=0.5, max_retries=2,
                                backoff_s=0.01, workers=2, batch_size=2, concurrency=2)
        manifest = run_rationales(RationalesConfig(paths=tmp_path / "p", out=tmp_path / "r", teacher=teacher))
    c = manifest["counts"]
    assert c["rationales"] == 3 and c["teacher_failures"] == 2 and c["flagged"] == 1
    assert c["teacher_retries"] == 2 + 2 + 2  # flaky: 2, down: 2, slow: 2
    rejects = {r["where"]: r["reason"] for r in read_jsonl(tmp_path / "r" / "rejects.jsonl")}
    assert rejects["question_id=q2"].startswith("teacher HTTP 500 after 3 attempt(s)")
    assert rejects["question_id=q3"].startswith("teacher timed out after 3 attempt(s)")
    rows = {r["question_id"]: r for r in pq.read_table(tmp_path / "r" / "rationales.parquet").to_pylist()}
    assert rows["q4"]["flagged"] and not rows["q0"]["flagged"] and not rows["q1"]["flagged"]
    assert rows["q0"]["teacher"] == f"openai:t@{server.base_url}"
