"""Ingest through real Ray Data read tasks: counts, rejects, determinism, atomic output."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from kgscale.ingest import IngestConfig, run_ingest
from kgscale.kg.graph import CSRGraph
from kgscale.kg.rejects import RejectedInputError
from kgscale.kg.snapshot import Snapshot
from kgscale.output import OutputExistsError
from tests.conftest import write_benchmark

ENTITIES = "id\tname\tdescription\na\tAlpha\tfirst\nb\tBeta\t\nc\tGamma\tthird\nd\t\t\n"
RELATIONS = "id\ttext\nr1\trelated to\nr2\tpart of\n"


def _messy(tmp_path):
    train = "a\tr1\tb\nb\tr2\tc\na\tr1\tb\nc\tr1\n\xff\n\na\tr1\td\na\tr9\tc\n"
    return write_benchmark(tmp_path / "src", train=train, valid="c\tr2\ta\n", test="b\tr1\tc\n",
                           entities=ENTITIES, relations=RELATIONS)


def test_rejects_are_counted_written_and_nothing_else_is_lost(tmp_path):
    src = _messy(tmp_path)
    # make one line invalid UTF-8 at the byte level
    train = (src / "train.txt").read_bytes().replace("\xff".encode(), b"\xff\xfe")
    (src / "train.txt").write_bytes(train)
    m = run_ingest(IngestConfig(source=str(src), out=tmp_path / "snap"))
    assert m["counts"]["triples"] == {"train": 2, "valid": 1, "test": 1}
    assert m["counts"]["entities"] == 3 and m["counts"]["relations"] == 2  # d has no text
    assert m["duplicates"]["within_split"]["train"] == 1
    assert m["rejected"]["by_reason"] == {
        "empty line": 1, "entity has no text": 2, "not valid UTF-8": 1,
        "relation has no text": 1, "wrong number of fields": 1,
    }
    rows = [json.loads(x) for x in (tmp_path / "snap" / "rejects.jsonl").read_text().splitlines()]
    by_line = {(r["file"].split("/")[-1], r["line"]): r["reason"] for r in rows}
    assert by_line[("train.txt", 4)].startswith("wrong number of fields: 2")
    assert by_line[("train.txt", 5)].startswith("not valid UTF-8")
    assert by_line[("train.txt", 6)] == "empty line"
    assert by_line[("train.txt", 7)] == "entity has no text: d"
    assert by_line[("train.txt", 8)] == "relation has no text: r9"
    assert by_line[("entities.tsv", 5)] == "entity has no text: d"
    snap = Snapshot(tmp_path / "snap")
    ents = snap.entities.to_pylist()
    assert [(e["id"], e["key"], e["name"], e["description"]) for e in ents] == [
        (0, "a", "Alpha", "first"), (1, "b", "Beta", None), (2, "c", "Gamma", "third")]
    assert snap.triples("train").to_pylist() == [
        {"head": 0, "relation": 0, "tail": 1, "split": "train"},
        {"head": 1, "relation": 1, "tail": 2, "split": "train"},
    ]
    assert m["inputs"][0]["sha256"] and len(m["inputs"]) == 5


def test_strict_makes_the_first_reject_fatal_and_writes_nothing(tmp_path):
    src = _messy(tmp_path)
    with pytest.raises(RejectedInputError, match=r"\.(txt|tsv):\d+: "):
        run_ingest(IngestConfig(source=str(src), out=tmp_path / "snap", strict=True))
    assert not (tmp_path / "snap").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".snap")] == []


def test_same_snapshot_whatever_the_partitioning(tmp_path, shared_datasets):
    # WN18RR train.txt is 3 MB: 0.25 MB tasks cut it into ~12 line-aligned ranges
    a = run_ingest(IngestConfig(source=str(shared_datasets / "wn18rr"), out=tmp_path / "a", read_task_mb=0.25))
    b = run_ingest(IngestConfig(source=str(shared_datasets / "wn18rr"), out=tmp_path / "b", read_task_mb=64))
    assert a["counts"] == b["counts"] == {
        "entities": 40943, "relations": 11, "triples": {"train": 86835, "valid": 3034, "test": 3134},
        "triples_total": 93003,
    }
    for name in ("triples.parquet", "entities.parquet", "relations.parquet"):
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name)), name
    # existing output is not replaced without overwrite, and is replaced with it
    with pytest.raises(OutputExistsError):
        run_ingest(IngestConfig(source=str(shared_datasets / "wn18rr"), out=tmp_path / "a"))


def test_registry_dataset_fb15k237_counts(tmp_path, shared_datasets, monkeypatch):
    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))
    m = run_ingest(IngestConfig(source="dataset:fb15k237", out=tmp_path / "fb"))
    assert m["counts"]["triples"] == {"train": 272115, "valid": 17535, "test": 20466}
    assert (m["counts"]["entities"], m["counts"]["relations"]) == (14541, 237)
    assert m["rejected"]["total"] == 0 and m["source"]["dataset"] == "fb15k237"
    snap = Snapshot(tmp_path / "fb")
    names = dict(zip(snap.entities["key"].to_pylist(), snap.entities["name"].to_pylist()))
    assert names["/m/010016"] == "Denton"


@ray.remote
def _graph_stats(graph):
    # read in a worker: the arrays are mapped from the object store, not copied
    return int(graph.neighbor.sum()), bool(graph.neighbor.flags.writeable), graph.num_edges


def test_csr_graph_is_shared_through_the_object_store(tmp_path):
    src = write_benchmark(tmp_path / "g", train="a\tr1\tb\nb\tr2\tc\n", entities=ENTITIES.replace("d\t\t\n", ""),
                          relations=RELATIONS)
    run_ingest(IngestConfig(source=str(src), out=tmp_path / "snap"))
    graph = CSRGraph.from_snapshot(Snapshot(tmp_path / "snap"))
    ref = ray.put(graph)
    total, writeable, edges = ray.get(_graph_stats.remote(ref))
    assert (total, edges) == (int(graph.neighbor.sum()), 4)
    assert writeable is False
    assert np.array_equal(graph.degree(), [1, 2, 1])
