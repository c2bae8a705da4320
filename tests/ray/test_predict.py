"""`kgscale predict` on a tiny KG with a tiny random causal LM, then
`kgscale writeback` into an RDF file and a real `oxigraph serve` on
127.0.0.1 (read back with SPARQL), and into Neo4j at the wire (the Bolt
test server) or a real server when NEO4J_URI is set."""
from __future__ import annotations

import json
import urllib.parse
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from kgscale.cli import main
from kgscale.kg.answers import AnswerIndex
from kgscale.kg.snapshot import Snapshot
from kgscale.kg.text import query_text
from kgscale.models.embed import Embedder
from tests.conftest import write_benchmark
from tests.ray.test_eval_kgc import ENTITIES, RELATIONS, TRAIN
from tests.servers.sparql import FailingProxy, OxigraphServer

# `kgscale predict` has top-level model/embed sections (it is no stage of `kgscale run`)
FLAGS = ["ray.progress_bars=false", "predict.embed.batch_size=8", "predict.embed.dtype=float32"]



@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    src = write_benchmark(root / "src", TRAIN, "e3\tr0\te4\n", "e0\tr0\te3\n", ENTITIES, RELATIONS)
    assert main(["ingest", str(src), "--out", str(root / "snap"), "ray.progress_bars=false"]) == 0
    out = root / "pred"
    assert main(["predict", "--snapshot", str(root / "snap"), "--model", "tiny-llama", "--relation", "r0",
                 "--direction", "both", "--top-k", "4", "--out", str(out), *FLAGS]) == 0
    return root, out


def test_each_query_gets_its_top_k_new_answers_best_first(predicted):
    root, out = predicted
    t = pq.read_table(out / "predictions.parquet").to_pandas()
    snap = Snapshot(root / "snap")
    index = AnswerIndex.from_snapshot(snap)
    # every head of r0 asked for tails (e0, e3, e4, e6, e8) and every tail for heads (e1-e5, e7, e9), 4 answers each
    queries = t.groupby(["query_entity", "direction"])
    assert len(queries) == 12 and (queries.size() == 4).all()
    assert set(t[t.direction == "tail"].query_entity) == {"e0", "e3", "e4", "e6", "e8"}
    for (entity, direction), g in queries:
        assert list(g["rank"]) == [1, 2, 3, 4] and list(g["score"]) == sorted(g["score"], reverse=True)
        known = index.answers_of(int(entity[1:]), 0, direction == "head")  # ids follow the keys here
        assert not set(g["candidate_id"]) & set(known.tolist()) and not g["known"].any()
        assert int(entity[1:]) not in set(g["candidate_id"])  # never the query's own entity
    # the scores are the model's cosines: one query checked against an embedding computed here
    texts = snap.entity_texts
    emb = Embedder({"model": "tiny-llama"}, dtype="float32")
    ents = emb.embed(texts)
    q = emb.embed([query_text(texts[0], snap.relation_texts[0], False)])[0]
    s = ents @ q
    s[[0, 1, 2, 3]] = -np.inf  # e0 itself (no answer by default) and its known tails under r0 (e1, e2; test e3)
    g = t[(t.query_entity == "e0") & (t.direction == "tail")]
    assert list(g["candidate_id"]) == list(np.argsort(-s, kind="stable")[:4])
    assert np.allclose(g["score"], np.sort(s)[::-1][:4], atol=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["queries"] == 12 and manifest["counts"]["predictions"] == 48


def test_known_triples_kept_and_marked_and_bad_queries_counted(predicted, tmp_path, capsys):
    root, _ = predicted
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("e0\tr0\ne0\tno-such-relation\nnobody\tr1\ne5\tnear\njust one field\n")
    out = tmp_path / "p"
    assert main(["predict", "--snapshot", str(root / "snap"), "--model", "tiny-llama", "--pairs", str(pairs),
                 "--keep-known", "--top-k", "10", "--out", str(out), *FLAGS]) == 0
    t = pq.read_table(out / "predictions.parquet").to_pandas()
    assert set(t.query_entity) == {"e0", "e5"}  # e5 asked by the relation's text
    assert set(t[t.query_entity == "e0"][t.known].candidate) == {"e1", "e2", "e3"}  # train and test
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in rejects) == ["not two tab-separated fields", "unknown entity", "unknown relation"]
    assert json.loads((out / "manifest.json").read_text())["rejected"]["total"] == 3
    capsys.readouterr()
    assert main(["predict", "--snapshot", str(root / "snap"), "--model", "tiny-llama", "--pairs", str(pairs),
                 "--strict", "--out", str(tmp_path / "q"), *FLAGS]) == 2
    assert "unknown relation" in capsys.readouterr().err and not (tmp_path / "q").exists()


def sparql_count(server: OxigraphServer, where: str) -> int:
    body = urllib.parse.urlencode({"query": f"SELECT (COUNT(*) AS ?n) WHERE {{ {where} }}"}).encode()
    req = urllib.request.Request(server.url, data=body, headers={"Accept": "application/sparql-results+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(json.loads(resp.read())["results"]["bindings"][0]["n"]["value"])


def test_written_back_as_rdf_star_and_into_a_sparql_store_without_duplicates(predicted, tmp_path, capsys):
    import pyoxigraph

    _, out = predicted
    before = (out / "predictions.parquet").read_bytes()
    t = pq.read_table(out / "predictions.parquet").to_pandas()
    triples = {(c, r, q) if d == "head" else (q, r, c) for q, r, d, c in
               zip(t.query_entity, t.relation, t.direction, t.candidate)}
    n = len(triples)
    assert 24 <= n < 48  # some triples were found from both ends
    nt = tmp_path / "predicted.nt"
    assert main(["writeback", str(out), "--rdf", str(nt)]) == 0  # a dry run
    said = capsys.readouterr().out
    assert f"dry run: would write {n} predicted triples" in said and "<<( <urn:kgscale:entity:e" in said and not nt.exists()
    assert main(["writeback", str(out), "--rdf", str(nt), "--apply", "--entity-base", "http://ex.org/e/"]) == 0
    quads = list(pyoxigraph.parse(path=str(nt), format=pyoxigraph.RdfFormat.N_TRIPLES))
    terms = [q.object for q in quads if q.predicate.value.endswith("#reifies")]
    assert len(quads) == 4 * n and len(terms) == n and all(isinstance(x, pyoxigraph.Triple) for x in terms)
    assert {x.subject.value for x in terms} <= {f"http://ex.org/e/e{i}" for i in range(10)}
    assert main(["writeback", str(out), "--rdf", str(tmp_path / "r.nt"), "--style", "reified", "--apply"]) == 0
    assert len(list(pyoxigraph.parse(path=str(tmp_path / "r.nt"), format=pyoxigraph.RdfFormat.N_TRIPLES))) == 7 * n

    server = OxigraphServer(tmp_path / "store", writable=True)
    try:
        for _ in range(2):  # the second write-back adds nothing
            assert main(["writeback", str(out), "--sparql-update", server.update_url, "--apply",
                         "--batch-size", "10"]) == 0
            assert f"{n} predictions inserted" in capsys.readouterr().out
            assert sparql_count(server, "?s a <http://www.w3.org/1999/02/22-rdf-syntax-ns#Statement>") == n
        assert sparql_count(server, "?s <https://kgscale.dev/ns#score> ?v FILTER(?v > -1)") == n
        # a store that refuses the second batch: the error names it, the first batch stays, the file is untouched
        proxy = FailingProxy(server.update_url, trigger="e6", times=None)
        try:
            code = main(["writeback", str(out), "--sparql-update", proxy.url.replace("/query", "/update"),
                         "--apply", "--batch-size", "10", "--model-id", "another-model"])
        finally:
            proxy.close()
        err = capsys.readouterr().err
        assert code == 1 and "refused batch" in err and "predictions file is unchanged" in err
    finally:
        server.close()
    assert (out / "predictions.parquet").read_bytes() == before


def test_written_back_into_neo4j_at_the_wire_with_a_dropped_batch_retried_once(predicted, monkeypatch, capsys):
    """The Bolt conversation a Neo4j server would see (no Neo4j server runs
    here; tests/servers/bolt.py speaks the protocol to the official driver):
    one parameterised MERGE per batch in its own write transaction; the
    second batch's connection drops before it commits, the driver runs that
    transaction again, and every batch is committed exactly once."""
    from kgscale.complete import writeback as wb
    from kgscale.kg.sources.neo4j_source import Neo4jConfig
    from tests.servers.bolt import BoltServer, Run

    _, out = predicted
    rows, manifest = wb.load(out)
    new = wb.distinct([r for r in rows if not r["known"]])
    model = wb.model_id(manifest)
    cfg = Neo4jConfig(key_property="key", node_labels=["Entity"])
    query = wb.neo4j_merge_query(cfg, "PREDICTED")
    assert "$rows" in query and "MERGE (h)-[p:`PREDICTED` {relation: row.relation, model: row.model}]->(t)" in query
    data = wb.neo4j_rows(new, model)
    batches = [data[i:i + 10] for i in range(0, len(data), 10)]
    script = [Run(query, {"rows": b}, ["written"], [[len(b)]], drop_after=0 if i == 1 else None)
              for i, b in enumerate(batches)]
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret")
    with BoltServer(user="neo4j", password="s3cret", runs=script, write=True) as bolt:
        assert main(["writeback", str(out), "--neo4j", bolt.uri(), "--key-property", "key", "--label", "Entity",
                     "--batch-size", "10"]) == 0  # a dry run: nothing sent
        assert "MERGE" in capsys.readouterr().out and not bolt.messages("RUN")
        assert main(["writeback", str(out), "--neo4j", bolt.uri(), "--key-property", "key", "--label", "Entity",
                     "--batch-size", "10", "--apply"]) == 0
        bolt.verify()  # each batch ran as scripted, the dropped one twice
        assert bolt.drops == 1 and len(bolt.commits) == len(batches)
    assert f"{len(new)} of {len(new)} predictions MERGEd" in capsys.readouterr().out
    assert "s3cret" not in repr(cfg)


@pytest.mark.skipif(not __import__("os").environ.get("NEO4J_URI"), reason="a real Neo4j server: set NEO4J_URI "
                    "(and NEO4J_PASSWORD) to run it; none can run on the development machine")
def test_written_back_into_a_real_neo4j_twice_without_duplicates(predicted, capsys):
    import os

    import neo4j

    from kgscale.complete import writeback as wb

    _, out = predicted
    uri, auth = os.environ["NEO4J_URI"], (os.environ.get("NEO4J_USER", "neo4j"), os.environ["NEO4J_PASSWORD"])
    with neo4j.GraphDatabase.driver(uri, auth=auth) as driver:
        driver.execute_query("MATCH (n:KgscaleTestEntity) DETACH DELETE n")
        driver.execute_query("UNWIND range(0, 9) AS i CREATE (:KgscaleTestEntity {key: 'e' + toString(i)})")
        for _ in range(2):
            assert main(["writeback", str(out), "--neo4j", uri, "--key-property", "key", "--label",
                         "KgscaleTestEntity", "--relationship-type", "KGSCALE_TEST", "--apply"]) == 0
        rows, _ = wb.load(out)
        n = len(wb.distinct([r for r in rows if not r["known"]]))
        got = driver.execute_query("MATCH (:KgscaleTestEntity)-[p:KGSCALE_TEST]->() RETURN count(p) AS n").records[0]["n"]
        driver.execute_query("MATCH (n:KgscaleTestEntity) DETACH DELETE n")
    assert got == n
