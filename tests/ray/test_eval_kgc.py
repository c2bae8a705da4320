"""``kgscale eval kgc`` end to end on a tiny KG with a tiny random causal LM."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kgscale.cli import main
from kgscale.eval.metrics import rank_metrics
from kgscale.eval.reference import loop_ranks
from kgscale.kg.snapshot import Snapshot, write_tables
from kgscale.kg.text import entity_text, query_text
from kgscale.models.embed import Embedder
from kgscale.output import write_manifest
from tests.conftest import write_benchmark

ENTITIES = "id\tname\tdescription\n" + "".join(f"e{i}\tthing {i}\tthe {i}th thing\n" for i in range(10))
RELATIONS = "id\ttext\nr0\tpart of\nr1\tnear\n"
TRAIN = "e0\tr0\te1\ne0\tr0\te2\ne1\tr1\te3\ne2\tr1\te3\ne4\tr0\te5\ne5\tr1\te6\ne6\tr0\te7\ne7\tr1\te8\ne8\tr0\te9\n"
VALID = "e3\tr0\te4\n"
TEST = "e0\tr0\te3\ne9\tr1\te0\ne2\tr0\te5\n"
FLAGS = ["ray.progress_bars=false", "kgc.embed.batch_size=8", "kgc.embed.dtype=float32"]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("kgc")
    src = write_benchmark(root / "src", TRAIN, VALID, TEST, ENTITIES, RELATIONS)
    assert main(["ingest", str(src), "--out", str(root / "snap"), "ray.progress_bars=false"]) == 0
    return root / "snap"


def test_eval_kgc_ranks_equal_the_reference(snapshot, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "kgc", "--snapshot", str(snapshot), "--model", "tiny-llama", "--out", str(out), *FLAGS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ranks = pq.read_table(out / "ranks.parquet").to_pandas()
    assert len(ranks) == 6 and metrics["queries"] == 6 and metrics["triples_skipped"]["total"] == 0
    assert sorted(ranks["direction"]) == ["head"] * 3 + ["tail"] * 3
    assert metrics["both"] == pytest.approx(rank_metrics(ranks["rank"]))
    assert metrics["excluding_query_entity"]["both"] == pytest.approx(rank_metrics(ranks["rank_excluding_query_entity"]))
    assert metrics["tail"] == pytest.approx(rank_metrics(ranks[ranks.direction == "tail"]["rank"]))
    assert set(metrics["per_relation"]) == {"r0", "r1"} and metrics["per_relation"]["r1"]["both"]["count"] == 2

    # The same ranks from embeddings computed here, without Ray, and the loop reference.
    snap = Snapshot(snapshot)
    ents = snap.entities.to_pylist()
    rels = {r["id"]: r["text"] for r in snap.relations.to_pylist()}
    key = {e["key"]: e["id"] for e in ents}
    texts = [entity_text(e["name"], e["description"]) for e in ents]
    emb = Embedder({"model": "tiny-llama"}, dtype="float32")  # as FLAGS run the stage: exact comparisons
    cand = emb.embed(texts)
    facts = {(key[h], r, key[t]) for h, r, t in (line.split("\t") for line in (TRAIN + VALID + TEST).split("\n") if line)}
    rel_id = {r["key"]: r["id"] for r in snap.relations.to_pylist()}
    facts = {(h, rel_id[r], t) for h, r, t in facts}
    exact = 0
    for row in ranks.itertuples():
        inverse = row.direction == "head"
        asked = row.tail if inverse else row.head
        q = emb.embed([query_text(texts[asked], rels[row.relation], inverse)])
        truth = {h for h, r, t in facts if r == row.relation and t == asked} if inverse else \
                {t for h, r, t in facts if r == row.relation and h == asked}
        assert row.target == (row.head if inverse else row.tail)
        for column, filtered in (("rank", truth), ("rank_excluding_query_entity", truth | {asked})):
            got = getattr(row, column)
            # the actor batches and pads differently, so scores may differ in the
            # last bits: the rank must lie within the ties at a 1e-5 tolerance,
            # and equal the reference exactly when no score is that close
            s = (cand @ q[0]).astype(np.float64)
            others = np.array([j for j in range(len(cand)) if j != row.target and j not in filtered], dtype=int)
            gap = s[others] - s[row.target]
            assert 1 + np.sum(gap > 1e-5) <= got <= 1 + np.sum(gap >= -1e-5), (column, row)
            if np.all(np.abs(gap) > 1e-5):
                assert got == loop_ranks(q, cand, [row.target], [filtered])[0]
                exact += 1
    assert exact >= 6  # most comparisons are not near-ties, so the check above is not vacuous
    # the filter mattered: e0 -r0-> e3 has two other true tails (e1, e2)
    assert json.loads((out / "manifest.json").read_text())["counts"]["queries"] == 6
    # the example queries (all 6 here) agree with the ranks: the answer is marked at its rank when in the top 5
    examples = json.loads((out / "examples.json").read_text())
    assert len(examples) == 6
    by_query = {(r.head_key if r.direction == "tail" else r.tail_key, r.relation_key, r.direction): r.rank
                for r in ranks.itertuples()}
    for ex in examples:
        assert ex["rank"] == by_query[(ex["entity"], ex["relation"], ex["direction"])]
        marked = [i + 1 for i, c in enumerate(ex["top"]) if c["is_answer"]]
        assert marked == ([int(ex["rank"])] if ex["rank"] <= 5 and ex["rank"] == int(ex["rank"]) else marked)
        assert [c["score"] for c in ex["top"]] == sorted((c["score"] for c in ex["top"]), reverse=True)


def test_evaluate_kgc_is_the_stage_without_its_directory(snapshot, tmp_path):
    """The library call (as PyKEEN's evaluators are called) measures what the
    stage writes, and writes nothing itself."""
    from kgscale.eval.embedding import EmbedConfig
    from kgscale.eval.kgc import KGCSettings, evaluate_kgc

    out = tmp_path / "eval"
    assert main(["eval", "kgc", "--snapshot", str(snapshot), "--model", "tiny-llama", "--out", str(out), *FLAGS]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    ev = evaluate_kgc(Snapshot(snapshot), "tiny-llama", KGCSettings(examples=3),
                      embed=EmbedConfig(batch_size=8, dtype="float32"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    stage = json.loads((out / "metrics.json").read_text())
    for side in ("tail", "head", "both", "per_relation", "excluding_query_entity"):
        assert ev.metrics[side] == stage[side], side
    assert ev.ranks.to_pylist() == pq.read_table(out / "ranks.parquet").to_pylist()
    assert len(ev.examples) == 3 and len(ev.skipped) == 0
    with pytest.raises(Exception, match="not found"):
        evaluate_kgc(snapshot, str(tmp_path / "no-such-model"))


def test_sharded_ranking_gives_the_same_ranks(snapshot, tmp_path):
    """kgc.rank.shards: the candidates held by 2 Ray actors, every rank as in the driver."""
    outs = {}
    for shards in (0, 2):
        outs[shards] = tmp_path / f"eval{shards}"
        assert main(["eval", "kgc", "--snapshot", str(snapshot), "--model", "tiny-llama", "--out", str(outs[shards]),
                     *FLAGS, f"kgc.rank.shards={shards}", "kgc.rank.shard_cpus=0.5"]) == 0
    single, sharded = (pq.read_table(outs[s] / "ranks.parquet") for s in (0, 2))
    assert sharded.column("rank").to_pylist() == single.column("rank").to_pylist()
    assert sharded.column("rank_excluding_query_entity").to_pylist() == \
        single.column("rank_excluding_query_entity").to_pylist()
    assert json.loads((outs[2] / "metrics.json").read_text())["both"] == \
        json.loads((outs[0] / "metrics.json").read_text())["both"]


def test_missing_checkpoint_exits_2(snapshot, tmp_path, capsys):
    assert main(["eval", "kgc", "--snapshot", str(snapshot), "--model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o"), *FLAGS]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "o").exists()


def _write_snapshot(path, entities, triples):
    path.mkdir()
    ent = pa.table({"id": pa.array(range(len(entities)), pa.int32()), "key": [e[0] for e in entities],
                    "name": [e[1] for e in entities], "description": [e[2] for e in entities]})
    rel = pa.table({"id": pa.array([0], pa.int32()), "key": ["r"], "text": ["rel"]})
    tri = pa.table({"head": pa.array([t[0] for t in triples], pa.int32()), "relation": pa.array([0] * len(triples), pa.int32()),
                    "tail": pa.array([t[1] for t in triples], pa.int32()), "split": [t[2] for t in triples]})
    write_tables(path, tri, ent, rel)
    counts = {s: sum(t[2] == s for t in triples) for s in ("train", "valid", "test")}
    write_manifest(path, "ingest", counts={"entities": len(entities), "relations": 1, "triples": counts})
    return path


def test_entity_without_text_is_a_counted_skip_or_strict_error(tmp_path, capsys):
    ents = [("a", "alpha", "first"), ("b", "beta", None), ("c", None, None), ("d", "delta", "")]
    snap = _write_snapshot(tmp_path / "snap", ents, [(0, 1, "train"), (1, 3, "train"), (0, 3, "test"), (2, 0, "test")])
    out = tmp_path / "eval"
    assert main(["eval", "kgc", "--snapshot", str(snap), "--model", "tiny-llama", "--out", str(out), *FLAGS]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["triples_evaluated"] == 1 and m["triples_skipped"]["total"] == 1
    assert m["candidates"] == 3 and m["candidates_without_text"] == 1
    skipped = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert skipped == [{"split": "test", "row": 1, "head": "c", "relation": 0, "tail": "a", "reason": "entity has no text: c"}]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rejected"] == {"total": 1, "by_reason": {"entity has no text": 1}}
    assert main(["eval", "kgc", "--snapshot", str(snap), "--model", "tiny-llama", "--out", str(tmp_path / "e2"),
                 "--strict", *FLAGS]) == 2
    assert "entity has no text: c" in capsys.readouterr().err


def test_snapshot_without_test_split_exits_2(tmp_path, capsys):
    snap = _write_snapshot(tmp_path / "snap", [("a", "alpha", ""), ("b", "beta", "")], [(0, 1, "train")])
    assert main(["eval", "kgc", "--snapshot", str(snap), "--model", "tiny-llama", "--out", str(tmp_path / "o"), *FLAGS]) == 2
    assert "has no test triples" in capsys.readouterr().err
    assert main(["eval", "kgc", "--snapshot", str(tmp_path / "missing"), "--model", "tiny-llama",
                 "--out", str(tmp_path / "o"), *FLAGS]) == 2
    assert "snapshot not found" in capsys.readouterr().err
