"""RDF files, the embedded store, a real SPARQL server and a Bolt server all
ingest the same graph to the same snapshot; failures become rejects or
errors that name the source (never a password)."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from kgscale.cli import main
from kgscale.ingest import IngestConfig, run_ingest
from kgscale.kg.rejects import RejectedInputError
from kgscale.kg.sources import SourceError
from kgscale.kg.sources.sparql import load_store
from kgscale.ray_session import RayConfig
from tests.servers.bolt import BoltServer, Run
from tests.servers.sparql import FailingProxy, OxigraphServer, free_port

EX = "http://example.org/kg/"
LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
DESC = "http://schema.org/description"
# id: (key, name, description)
NODES = {0: (EX + "alice", "Alice", "a person"), 1: (EX + "bob", "Bob", None),
         2: (EX + "paris", "Paris", "capital of France"), 3: (EX + "france", None, None)}
# id, head, type, tail, split
RELS = [(0, 0, EX + "knows", 1, "train"), (1, 0, EX + "birthPlace", 2, "train"), (2, 1, EX + "livesIn", 2, "valid"),
        (3, 2, EX + "capitalOf", 3, "test"), (4, 1, EX + "birthPlace", 3, "train")]
SPLIT_GRAPHS = {"valid": [EX + "graph/valid"], "test": [EX + "graph/test"]}
PASSWORD = "s3cret-Pa55word"


def write_nquads(path) -> None:
    lines = []
    for _, h, t, o, split in RELS:
        graph = "" if split == "train" else f" <{EX}graph/{split}>"
        lines.append(f"<{NODES[h][0]}> <{t}> <{NODES[o][0]}>{graph} .")
    for key, name, desc in NODES.values():
        if name:
            lines.append(f'<{key}> <{LABEL}> "{name}"@en .')
        if desc:
            lines.append(f'<{key}> <{DESC}> "{desc}"@en .')
    lines.append(f'<{EX}alice> <{LABEL}> "Alicia"@es .')  # another language: skipped
    path.write_text("\n".join(lines) + "\n")


def ingest(source: str, out, **sections) -> dict:
    return run_ingest(IngestConfig(source=source, out=out, **sections), RayConfig(progress_bars=False))


def tables(snapshot) -> dict:
    return {name: pq.read_table(snapshot / f"{name}.parquet").to_pylist() for name in ("triples", "entities", "relations")}


# --- the Bolt script for NODES and RELS -----------------------------------------------------------

REL_Q = ("UNWIND range($lo, $hi) AS rid MATCH (h)-[r]->(t) WHERE id(r) = rid RETURN id(r) AS id, "
         "coalesce(toString(h[$key_property]), 'node:' + toString(id(h))) AS head, type(r) AS type, "
         "coalesce(toString(t[$key_property]), 'node:' + toString(id(t))) AS tail, r[$split_property] AS split")
NODE_Q = ("UNWIND range($lo, $hi) AS nid MATCH (n) WHERE id(n) = nid RETURN id(n) AS id, "
          "coalesce(toString(n[$key_property]), 'node:' + toString(id(n))) AS key, n[$name_property] AS name, "
          "n[$description_property] AS description")
PROPS = {"key_property": "uri", "name_property": "name", "description_property": "description", "split_property": "split"}
NEO4J = {"user": "reader", "password_env": "KGSCALE_TEST_NEO4J_PASSWORD", "key_property": "uri", "split_property": "split",
         "ids_per_task": 3, "ids_per_transaction": 2, "fetch_size": 2, "max_retry_time_s": 15}


def bolt_script(drop: bool) -> list[Run]:
    runs = [
        Run("MATCH ()-[r]->() RETURN min(id(r)) AS lo, max(id(r)) AS hi, count(r) AS n", {}, ["lo", "hi", "n"], [[0, 4, 5]]),
        Run("MATCH (n) RETURN min(id(n)) AS lo, max(id(n)) AS hi, count(n) AS n", {}, ["lo", "hi", "n"], [[0, 3, 4]]),
    ]
    # relationship ids 0..4 in tasks 0..2, 3..4; transactions of 2 ids
    for lo, hi in ((0, 1), (2, 2), (3, 4)):
        recs = [[i, NODES[h][0], t, NODES[o][0], s] for i, h, t, o, s in RELS if lo <= i <= hi]
        runs.append(Run(REL_Q, {"lo": lo, "hi": hi, **PROPS}, ["id", "head", "type", "tail", "split"], recs,
                        drop_after=1 if drop and lo == 3 else None))
    for lo, hi in ((0, 1), (2, 3)):
        recs = [[i, *NODES[i]] for i in range(lo, hi + 1)]
        runs.append(Run(NODE_Q, {"lo": lo, "hi": hi, **PROPS}, ["id", "key", "name", "description"], recs))
    return runs


@pytest.fixture
def neo4j_password(monkeypatch):
    monkeypatch.setenv("KGSCALE_TEST_NEO4J_PASSWORD", PASSWORD)
    return PASSWORD


def test_same_snapshot_from_file_store_sparql_server_and_bolt(tmp_path, neo4j_password):
    nq = tmp_path / "kg.nq"
    write_nquads(nq)
    rdf = {"splits": {"graphs": SPLIT_GRAPHS}}
    m_file = ingest(str(nq), tmp_path / "from_file", rdf=rdf)
    store = tmp_path / "store"
    assert load_store(str(store), [str(nq)]) == 11
    sparql = {"page_size": 2, "rows_per_task": 3}  # predicates span pages; pages spread over tasks
    m_store = ingest(f"oxigraph:{store}", tmp_path / "from_store", rdf=rdf, sparql=sparql, parallelism=2)
    server = OxigraphServer(store)
    try:
        m_http = ingest(f"sparql+{server.url}", tmp_path / "from_sparql", rdf=rdf, sparql=sparql, parallelism=2)
    finally:
        server.close()
    with BoltServer(user="reader", password=PASSWORD, fetch_size=2, runs=bolt_script(drop=True)) as bolt:
        m_bolt = ingest(bolt.uri("neo4j"), tmp_path / "from_bolt", neo4j=NEO4J, parallelism=2)
        bolt.verify()  # every scripted transaction ran, the dropped one twice
        assert bolt.drops == 1
        assert all(b[0]["db"] == "neo4j" and b[0]["mode"] == "r" for b in bolt.messages("BEGIN"))
        assert all(m[0]["credentials"] == "***" for m in bolt.messages("LOGON"))  # the server's log masks it too

    expected = tables(tmp_path / "from_file")
    assert [t["split"] for t in expected["triples"]].count("test") == 1
    assert {e["key"]: e["name"] for e in expected["entities"]}[EX + "france"] == "france"  # no label: local name
    assert {r["text"] for r in expected["relations"]} == {"knows", "birth place", "lives in", "capital of"}
    for name in ("from_store", "from_sparql", "from_bolt"):
        assert tables(tmp_path / name) == expected, name
    for m in (m_file, m_store, m_http, m_bolt):
        assert m["counts"]["triples"] == {"train": 3, "valid": 1, "test": 1}
        assert m["rejected"]["total"] == 0
    assert m_file["skipped"]["name or description in a language not in rdf.languages"]["total"] == 1
    for m in (m_file, m_store, m_http, m_bolt):
        assert PASSWORD not in json.dumps(m)


def test_sparql_500_is_retried_then_a_reject_then_fatal_when_strict(tmp_path):
    nq = tmp_path / "kg.nq"
    write_nquads(nq)
    store = tmp_path / "store"
    load_store(str(store), [str(nq)])
    rdf = {"splits": {"graphs": SPLIT_GRAPHS}}
    sparql = {"retries": 2, "backoff_s": 0.01, "timeout_s": 10}
    server = OxigraphServer(store)
    try:
        flaky = FailingProxy(server.url, trigger="capitalOf", times=2)  # fails twice, then answers
        m = ingest(flaky.url, tmp_path / "retried", rdf=rdf, sparql=sparql)
        assert flaky.failed == 2 and m["rejected"]["total"] == 0 and m["counts"]["triples_total"] == 5
        flaky.close()

        broken = FailingProxy(server.url, trigger="capitalOf", times=None)  # always 500
        m = ingest(broken.url, tmp_path / "rejected", rdf=rdf, sparql=sparql)
        assert broken.failed == 3  # the first try and two retries
        assert m["counts"]["triples"] == {"train": 3, "valid": 1, "test": 0}  # the rest is kept
        (rej,) = [json.loads(line) for line in open(tmp_path / "rejected" / "rejects.jsonl")]
        assert rej["file"] == broken.url and f"<{EX}capitalOf>" in rej["reason"] and "HTTP 500" in rej["reason"]
        with pytest.raises(RejectedInputError, match="HTTP 500"):
            ingest(broken.url, tmp_path / "strict", rdf=rdf, sparql=sparql, strict=True)
        assert not (tmp_path / "strict").exists()
        broken.close()
    finally:
        server.close()
    url = f"http://127.0.0.1:{free_port()}/query"
    with pytest.raises(SourceError, match=f"{url}: cannot plan the read: cannot connect"):
        ingest(url, tmp_path / "refused", sparql={"retries": 1, "backoff_s": 0.01})


def test_neo4j_wrong_password_and_refused_connection(tmp_path, neo4j_password, monkeypatch):
    with BoltServer(user="reader", password="the-right-one", runs=[]) as bolt:
        with pytest.raises(SourceError) as err:
            ingest(bolt.uri("bolt"), tmp_path / "auth", neo4j=NEO4J)
        assert bolt.auth_failures >= 1
    assert "authentication failed" in str(err.value) and bolt.uri("bolt") in str(err.value)
    assert PASSWORD not in str(err.value)
    assert not (tmp_path / "auth").exists()
    uri = f"bolt://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError, match="cannot connect") as err:
        ingest(uri, tmp_path / "refused", neo4j={**NEO4J, "max_retry_time_s": 0, "connection_timeout_s": 2})
    assert PASSWORD not in str(err.value) and uri in str(err.value)
    monkeypatch.delenv("KGSCALE_TEST_NEO4J_PASSWORD")
    with pytest.raises(Exception, match="neo4j.password_env: environment variable KGSCALE_TEST_NEO4J_PASSWORD is not set"):
        ingest(uri, tmp_path / "nopw", neo4j=NEO4J)


def test_cli_records_bad_rdf_with_file_and_line_and_strict_fails(tmp_path, capsys):
    src = tmp_path / "rdf"
    src.mkdir()
    (src / "good.ttl").write_text(f'<{EX}a> <{EX}p> <{EX}b> .\n<{EX}a> <{LABEL}> "A" .\n')
    (src / "bad.nt").write_bytes(
        f'<{EX}a> <{EX}p> <{EX}c> .\n<{EX}a> <{EX}p> "unterminated .\n<bad iri> <{EX}p> <{EX}b> .\n'
        f'<{EX}a> <{EX}p> "bad \\q escape" .\n'.encode() + f'<{EX}a> <{EX}p> "'.encode() + b"\xff\xfe" + b'" .\n'
        + f'<{EX}c> <{EX}p> <{EX}d> .\n'.encode())
    (src / "empty.nq").write_bytes(b"")
    out = tmp_path / "snap"
    assert main(["ingest", str(src), "--out", str(out), "ray.progress_bars=false"]) == 0
    rejects = [json.loads(line) for line in open(out / "rejects.jsonl")]
    where = [(os.path.basename(r["file"]), r["line"]) for r in rejects]
    assert where == [("bad.nt", 2), ("bad.nt", 3), ("bad.nt", 4), ("bad.nt", 5), ("empty.nq", 1)]
    assert "not valid UTF-8" in rejects[3]["reason"] and "Invalid IRI" in rejects[1]["reason"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["triples_total"] == 3 and m["counts"]["entities"] == 4
    capsys.readouterr()
    assert main(["ingest", str(src), "--out", str(tmp_path / "strict"), "--strict", "ray.progress_bars=false"]) == 2
    assert "bad.nt:2" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("NEO4J_URI"), reason="NEO4J_URI is not set: no real Neo4j to read (see docs/sources.md)")
def test_real_neo4j(tmp_path):
    """Against a real Neo4j: NEO4J_URI, NEO4J_USER (default neo4j), NEO4J_PASSWORD,
    NEO4J_DATABASE (default neo4j). Writes a small graph labelled
    KgscaleTest, reads it back, and deletes it."""
    import neo4j

    uri, user, db = os.environ["NEO4J_URI"], os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_DATABASE", "neo4j")
    with neo4j.GraphDatabase.driver(uri, auth=(user, os.environ["NEO4J_PASSWORD"])) as driver:
        driver.execute_query("MATCH (n:KgscaleTest) DETACH DELETE n", database_=db)
        for i, (key, name, desc) in NODES.items():
            driver.execute_query("CREATE (:KgscaleTest {uri: $k, name: $n, description: $d})", k=key, n=name, d=desc, database_=db)
        for _, h, t, o, split in RELS:
            driver.execute_query("MATCH (a:KgscaleTest {uri: $h}), (b:KgscaleTest {uri: $o}) "
                                 "CALL apoc.create.relationship(a, $t, {split: $s}, b) YIELD rel RETURN rel"
                                 if False else
                                 f"MATCH (a:KgscaleTest {{uri: $h}}), (b:KgscaleTest {{uri: $o}}) CREATE (a)-[:`{t}` {{split: $s}}]->(b)",
                                 h=NODES[h][0], o=NODES[o][0], s=split, database_=db)
        try:
            nq = tmp_path / "kg.nq"
            write_nquads(nq)
            ingest(str(nq), tmp_path / "from_file", rdf={"splits": {"graphs": SPLIT_GRAPHS}})
            ingest(uri, tmp_path / "from_neo4j", neo4j={"user": user, "password_env": "NEO4J_PASSWORD", "database": db,
                                                         "node_labels": ["KgscaleTest"], "key_property": "uri",
                                                         "split_property": "split"})
            assert tables(tmp_path / "from_neo4j") == tables(tmp_path / "from_file")
        finally:
            driver.execute_query("MATCH (n:KgscaleTest) DETACH DELETE n", database_=db)
