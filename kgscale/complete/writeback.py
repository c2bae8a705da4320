"""Predictions written back to where the graph lives: an RDF file or a SPARQL
1.1 store. Dry-run unless told to apply: a dry run says what would be written
and shows the first statements.

A predicted link is not asserted as a fact. Each becomes a statement about
the triple (h, r, t): its ``kgscale:score``, ``kgscale:rank`` and
``kgscale:model`` (the model directory's name and the predictions' creation
time unless ``model_id`` is given):

- RDF files (N-Triples, which is Turtle too), style ``rdf12``: RDF 1.2
  triple terms, ``<urn:kgscale:prediction:SHA> rdf:reifies <<( <h> <r> <t>
  )>>`` and the statement's score, rank and model; style ``reified``: the
  RDF 1.1 reified statement below, for tools without RDF 1.2.
- SPARQL 1.1 stores (which need not know RDF 1.2): reified statements,
  ``<urn:kgscale:prediction:SHA> rdf:subject <h>; rdf:predicate <r>;
  rdf:object <t>; kgscale:score ...``; ``INSERT DATA`` in batches of
  ``batch_size``.

The statement's IRI is a hash of the triple and the model id, so writing the
same predictions again adds no duplicate. A store that
  refuses a batch stops the write-back, names the batch and how many
  statements went in before it; the predictions file is left as it is.

Entity and relation keys that are absolute IRIs (as from an RDF source) are
used as they are; other keys (a TSV benchmark's) are appended, percent-
encoded, to ``entity_base`` / ``relation_base``.
"""
from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

NS = "https://kgscale.dev/ns#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*$")


class WriteBackError(Exception):
    """A store refused a write (the predictions file is untouched)."""


@dataclass(frozen=True)
class Naming:
    entity_base: str = "urn:kgscale:entity:"
    relation_base: str = "urn:kgscale:relation:"

    def iri(self, key: str, base: str) -> str:
        if _IRI.match(key):
            return key
        return base + urllib.parse.quote(key, safe="")

    def entity(self, key: str) -> str:
        return self.iri(key, self.entity_base)

    def relation(self, key: str) -> str:
        return self.iri(key, self.relation_base)


def load(pred_dir: Path) -> tuple[list[dict], dict]:
    pred_dir = Path(pred_dir)
    path = pred_dir / "predictions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: point at a directory `kgscale predict` wrote")
    manifest = json.loads((pred_dir / "manifest.json").read_text(encoding="utf-8"))
    rows = pq.read_table(path, columns=["query_entity", "relation", "direction", "candidate", "rank", "score",
                                        "known"]).to_pylist()
    return rows, manifest


def model_id(manifest: dict) -> str:
    model = Path(str(manifest.get("inputs", {}).get("model", "model"))).name
    return f"{model}@{manifest.get('created_at', '')}"


def ends(row: dict) -> tuple[str, str]:
    """(head key, tail key) of a prediction: a head query's candidate is the head."""
    q, c = row["query_entity"], row["candidate"]
    return (c, q) if row["direction"] == "head" else (q, c)


def triple(row: dict, naming: Naming) -> tuple[str, str, str]:
    """(h, r, t) IRIs of a prediction."""
    h, t = ends(row)
    return naming.entity(h), naming.relation(row["relation"]), naming.entity(t)


def distinct(rows: list[dict]) -> list[dict]:
    """One row a predicted triple: a triple both a tail query and a head query
    found (each the other's answer) keeps its higher-scoring row."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (*ends(r), r["relation"])
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = r
    return list(best.values())


def _lit(value, datatype: str) -> str:
    return f'"{value}"^^<{XSD}{datatype}>'


def _text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def rdf12_lines(rows: list[dict], naming: Naming, model: str) -> list[str]:
    """N-Triples 1.2: each prediction's statement IRI ``rdf:reifies`` the
    triple term ``<<( <h> <r> <t> )>>`` and carries score, rank and model."""
    out = []
    for r in rows:
        h, p, t = triple(r, naming)
        s = f"<{statement_iri(h, p, t, model)}>"
        out += [f"{s} <{RDF}reifies> <<( <{h}> <{p}> <{t}> )>> ."] + _annotations(s, r, model)
    return out


def _annotations(s: str, r: dict, model: str) -> list[str]:
    return [f"{s} <{NS}score> {_lit(repr(float(r['score'])), 'double')} .",
            f"{s} <{NS}rank> {_lit(int(r['rank']), 'integer')} .", f"{s} <{NS}model> {_text(model)} ."]


def statement_iri(h: str, p: str, t: str, model: str) -> str:
    digest = hashlib.sha256("\x1f".join((h, p, t, model)).encode()).hexdigest()[:32]
    return f"urn:kgscale:prediction:{digest}"


def reified_lines(rows: list[dict], naming: Naming, model: str) -> list[list[str]]:
    """For each prediction, the triples of its RDF 1.1 reified statement."""
    out = []
    for r in rows:
        h, p, t = triple(r, naming)
        s = f"<{statement_iri(h, p, t, model)}>"
        out.append([f"{s} <{RDF}type> <{RDF}Statement> .", f"{s} <{RDF}subject> <{h}> .",
                    f"{s} <{RDF}predicate> <{p}> .", f"{s} <{RDF}object> <{t}> ."] + _annotations(s, r, model))
    return out


def write_rdf(rows: list[dict], path: Path, naming: Naming, model: str, style: str = "rdf12") -> int:
    """N-Triples (valid Turtle too) in ``style`` rdf12 or reified; the statements written."""
    lines = rdf12_lines(rows, naming, model) if style == "rdf12" else \
        [line for g in reified_lines(rows, naming, model) for line in g]
    tmp = Path(str(path) + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return len(lines)


def sparql_update(rows: list[dict], endpoint: str, naming: Naming, model: str, batch_size: int = 500,
                  user: str | None = None, password: str | None = None, timeout_s: float = 60.0) -> int:
    """INSERT DATA in batches of ``batch_size`` predictions; the statements written."""
    groups = reified_lines(rows, naming, model)
    headers = {"Content-Type": "application/sparql-update"}
    if user is not None:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
    done = 0
    for b, lo in enumerate(range(0, len(groups), batch_size)):
        body = "INSERT DATA {\n" + "\n".join(line for g in groups[lo:lo + batch_size] for line in g) + "\n}"
        req = urllib.request.Request(endpoint, data=body.encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            detail = exc.read().decode("utf-8", "replace")[:300] if isinstance(exc, urllib.error.HTTPError) else str(exc)
            raise WriteBackError(f"{endpoint} refused batch {b + 1} (predictions {lo + 1}-"
                                 f"{min(lo + batch_size, len(groups))}): {detail}; {done} predictions were written "
                                 f"before it, and the predictions file is unchanged") from None
        done += len(groups[lo:lo + batch_size])
    return done


def neo4j_merge_query(cfg, rel_type: str) -> str:
    """The parameterised batch write: each row's (h, t) nodes found by key and
    one ``rel_type`` relationship between them per (relation, model), MERGEd
    so that a rerun or a retried transaction adds none; score and rank set."""
    label = f":`{cfg.node_labels[0]}`" if cfg.node_labels else ""
    if cfg.key_property:
        find = f"MATCH (h{label} {{`{cfg.key_property}`: row.h}}) MATCH (t{label} {{`{cfg.key_property}`: row.t}})"
    else:  # keys are 'node:<id>', as the Neo4j source writes them without a key property
        find = f"MATCH (h{label}) WHERE id(h) = row.h_id MATCH (t{label}) WHERE id(t) = row.t_id"
    return (f"UNWIND $rows AS row {find} "
            f"MERGE (h)-[p:`{rel_type}` {{relation: row.relation, model: row.model}}]->(t) "
            f"SET p.score = row.score, p.rank = row.rank RETURN count(p) AS written")


def neo4j_rows(rows: list[dict], model: str) -> list[dict]:
    out = []
    for r in rows:
        h, t = ends(r)
        row = {"h": h, "t": t, "relation": r["relation"], "model": model, "score": float(r["score"]),
               "rank": int(r["rank"])}
        for side, key in (("h", h), ("t", t)):
            if key.startswith("node:") and key[5:].isdigit():
                row[f"{side}_id"] = int(key[5:])
        out.append(row)
    return out


def neo4j_merge(rows: list[dict], uri: str, cfg, rel_type: str, model: str, batch_size: int = 500) -> int:
    """Write ``rows`` in batched write transactions; the relationships written
    (a batch whose nodes are not all found writes fewer: counted, not an error)."""
    from kgscale.kg.sources.neo4j_source import Secret, describe_error, open_driver
    from kgscale.config import secret_from_env

    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", rel_type):
        raise ValueError(f"relationship type {rel_type!r} is not a plain name ([A-Za-z_][A-Za-z0-9_]*)")
    password = Secret(secret_from_env(cfg.password_env, what="neo4j.password_env"))
    query, data = neo4j_merge_query(cfg, rel_type), neo4j_rows(rows, model)
    written = 0
    driver = open_driver(uri, cfg, password)
    try:
        with driver.session(database=cfg.database) as session:
            for b, lo in enumerate(range(0, len(data), batch_size)):
                batch = data[lo:lo + batch_size]
                try:  # execute_write retries a transaction cut off by a transient failure; MERGE keeps it single
                    written += session.execute_write(lambda tx: tx.run(query, {"rows": batch}).single()["written"])
                except Exception as exc:
                    raise WriteBackError(f"{uri} refused batch {b + 1} (predictions {lo + 1}-{lo + len(batch)}): "
                                         f"{describe_error(exc, password)}; {written} relationships were written "
                                         f"before it, and the predictions file is unchanged") from None
    finally:
        driver.close()
    return written
