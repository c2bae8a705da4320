"""Neo4j: ``neo4j://`` and ``bolt://`` URIs, read with the official driver.

Planning, on the driver, runs once: the id range and count of the
relationships and of the nodes. The ranges are cut into read tasks of
``neo4j.ids_per_task`` ids; each read task opens its own driver and reads
its range in read transactions of ``neo4j.ids_per_transaction`` ids, by id
seeks (``UNWIND range($lo, $hi) AS id MATCH ... WHERE id(r) = id``), so no
task rescans what another read (as SKIP/LIMIT paging would). Queries are
parameterised; node labels, the only names written into query text, are
checked against ``[A-Za-z_][A-Za-z0-9_]*`` first.

- A relationship ``(h)-[r:TYPE]->(t)`` is a triple: head and tail keys are
  the nodes' ``neo4j.key_property`` (or ``node:<id>`` without one), the
  relation key is the type, the split ``r[neo4j.split_property]`` (or train).
- A node is an entity named by ``neo4j.name_property`` and described by
  ``neo4j.description_property``; a relation's text is its type split into
  words (``BORN_IN`` -> ``born in``).
- The password comes from the environment variable ``neo4j.password_env``;
  it never appears in logs, errors or manifests. Transient failures
  (a dropped connection, a leader switch) are retried by the driver's
  managed transactions; a range that still fails becomes a rejected row.
"""
from __future__ import annotations

import math
import re
import urllib.parse
from typing import Iterator

import pyarrow as pa
from pydantic import Field, field_validator
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.config import StrictModel, secret_from_env
from kgscale.kg.schema import ENTITY, RAW_SCHEMA, REJECT, TRIPLE, raw_table
from kgscale.kg.sources.base import SourceError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DATABASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def _names(values: list[str] | str | None, what: str):
    for v in [values] if isinstance(values, str) else values or []:
        if not NAME.match(v):
            raise ValueError(f"{what} {v!r} is not a plain name ([A-Za-z_][A-Za-z0-9_]*)")
    return values


class Neo4jConfig(StrictModel):
    database: str | None = "neo4j"
    user: str = "neo4j"
    # environment variable holding the password (never the password itself)
    password_env: str = "NEO4J_PASSWORD"
    # read only nodes with one of these labels (and relationships between them); empty: all
    node_labels: list[str] = Field(default_factory=list)
    # read only relationships of these types; empty: all
    relationship_types: list[str] = Field(default_factory=list)
    # node property holding the entity key; None: the node id ("node:<id>")
    key_property: str | None = None
    # node properties holding the entity's name and description
    name_property: str = "name"
    description_property: str | None = "description"
    # relationship property holding the split (train / valid / test); None: all train
    split_property: str | None = None
    ids_per_task: int = Field(200_000, gt=0)
    ids_per_transaction: int = Field(20_000, gt=0)
    # records per PULL
    fetch_size: int = Field(1000, gt=0)
    connection_timeout_s: float = Field(30.0, gt=0)
    # how long the driver keeps retrying a transaction on transient failures
    max_retry_time_s: float = Field(30.0, ge=0)

    @field_validator("node_labels")
    @classmethod
    def _labels(cls, v):
        return _names(v, "label")

    @field_validator("relationship_types")
    @classmethod
    def _types(cls, v):
        return _names(v, "relationship type")

    @field_validator("key_property", "name_property", "description_property", "split_property")
    @classmethod
    def _props(cls, v):
        return _names(v, "property name")

    @field_validator("database")
    @classmethod
    def _db(cls, v):
        if v is not None and not DATABASE.match(v):
            raise ValueError(f"database name {v!r} is not valid")
        return v


class Secret:
    """A value that prints as ``***``: safe in reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


# --- queries: text fixed by the config, values always parameters ----------------------------


def _label_filter(var: str, labels: list[str]) -> str:
    if not labels:
        return ""
    return " AND (" + " OR ".join(f"{var}:`{label}`" for label in _names(labels, "label")) + ")"


def _key(var: str, cfg: Neo4jConfig) -> str:
    own = f"'node:' + toString(id({var}))"
    return f"coalesce(toString({var}[$key_property]), {own})" if cfg.key_property else own


def plan_queries(cfg: Neo4jConfig) -> tuple[str, str]:
    types = " WHERE type(r) IN $types" if cfg.relationship_types else ""
    rels = f"MATCH ()-[r]->(){types} RETURN min(id(r)) AS lo, max(id(r)) AS hi, count(r) AS n"
    nodes = "MATCH (n) RETURN min(id(n)) AS lo, max(id(n)) AS hi, count(n) AS n"
    return rels, nodes


def relationship_query(cfg: Neo4jConfig) -> str:
    where = "id(r) = rid"
    if cfg.relationship_types:
        where += " AND type(r) IN $types"
    where += _label_filter("h", cfg.node_labels) + _label_filter("t", cfg.node_labels)
    split = ", r[$split_property] AS split" if cfg.split_property else ""
    return (
        "UNWIND range($lo, $hi) AS rid MATCH (h)-[r]->(t) WHERE " + where
        + f" RETURN id(r) AS id, {_key('h', cfg)} AS head, type(r) AS type, {_key('t', cfg)} AS tail{split}"
    )


def node_query(cfg: Neo4jConfig) -> str:
    where = "id(n) = nid" + _label_filter("n", cfg.node_labels)
    desc = "n[$description_property]" if cfg.description_property else "null"
    return (
        "UNWIND range($lo, $hi) AS nid MATCH (n) WHERE " + where
        + f" RETURN id(n) AS id, {_key('n', cfg)} AS key, n[$name_property] AS name, {desc} AS description"
    )


def query_params(cfg: Neo4jConfig, lo: int, hi: int) -> dict:
    params = {"lo": lo, "hi": hi}
    if cfg.relationship_types:
        params["types"] = list(cfg.relationship_types)
    for name in ("key_property", "name_property", "description_property", "split_property"):
        if getattr(cfg, name):
            params[name] = getattr(cfg, name)
    return params


# --- connections ------------------------------------------------------------------------------


def open_driver(uri: str, cfg: Neo4jConfig, password: Secret):
    import neo4j

    return neo4j.GraphDatabase.driver(
        uri,
        auth=(cfg.user, password.get()),
        connection_timeout=cfg.connection_timeout_s,
        max_transaction_retry_time=cfg.max_retry_time_s,
        user_agent="kgscale",
    )


def _session(driver, cfg: Neo4jConfig):
    import neo4j

    return driver.session(database=cfg.database, default_access_mode=neo4j.READ_ACCESS, fetch_size=cfg.fetch_size)


def _fetch(tx, query: str, params: dict) -> list[list]:
    # consume inside the transaction: a retried transaction starts over, so
    # a dropped connection never leaves half a range behind
    return [list(record.values()) for record in tx.run(query, params)]


def _clean(text: str, password: Secret | None) -> str:
    if password is not None and password.get() and password.get() in text:
        text = text.replace(password.get(), "***")
    return text


def describe_error(exc: Exception, password: Secret | None = None) -> str:
    import neo4j.exceptions as ne

    if isinstance(exc, ne.AuthError):
        what = "authentication failed"
    elif isinstance(exc, ne.ServiceUnavailable):
        what = "cannot connect"
    elif isinstance(exc, ne.SessionExpired):
        what = "connection lost"
    else:
        what = type(exc).__name__
    detail = getattr(exc, "message", None) or str(exc)
    return _clean(f"{what}: {detail}", password)


# --- reading ------------------------------------------------------------------------------------


def read_range(uri: str, cfg: Neo4jConfig, password: Secret, what: str, lo: int, hi: int, label: str) -> Iterator[pa.Table]:
    """One read task: ids ``lo..hi`` (inclusive) of relationships or nodes
    (``what``), a transaction per ``ids_per_transaction`` ids. Plain function."""
    import neo4j.exceptions as ne

    query = relationship_query(cfg) if what == "relationships" else node_query(cfg)
    driver = open_driver(uri, cfg, password)
    try:
        with _session(driver, cfg) as session:
            for start in range(lo, hi + 1, cfg.ids_per_transaction):
                end = min(start + cfg.ids_per_transaction - 1, hi)
                try:
                    rows = session.execute_read(_fetch, query, query_params(cfg, start, end))
                except (ne.Neo4jError, ne.DriverError) as exc:
                    yield raw_table(1, kind=REJECT, file=label, offset=start,
                                    reason=f"Neo4j read of {what} with ids {start}..{end} failed: {describe_error(exc, password)}")
                    continue
                if rows:
                    yield (_triples if what == "relationships" else _entities)(rows, cfg, label)
    finally:
        driver.close()


def _text(v) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s if s.strip() else None


def _triples(rows: list[list], cfg: Neo4jConfig, label: str) -> pa.Table:
    cols = list(zip(*rows))
    n = len(rows)
    split = pa.array([_text(v) or "train" for v in cols[4]], pa.string()) if cfg.split_property else "train"
    return raw_table(n, kind=TRIPLE, offset=pa.array(cols[0], pa.int64()), head=pa.array(cols[1], pa.string()),
                     relation=pa.array(cols[2], pa.string()), tail=pa.array(cols[3], pa.string()), split=split, file=label)


def _entities(rows: list[list], cfg: Neo4jConfig, label: str) -> pa.Table:
    cols = list(zip(*rows))
    return raw_table(len(rows), kind=ENTITY, offset=pa.array(cols[0], pa.int64()), key=pa.array(cols[1], pa.string()),
                     name=pa.array([_text(v) for v in cols[2]], pa.string()),
                     description=pa.array([_text(v) for v in cols[3]], pa.string()), priority=0, file=label)


class Neo4jDatasource(Datasource):
    def __init__(self, uri: str, cfg: Neo4jConfig, password: Secret, ranges: list[tuple[str, int, int]], label: str) -> None:
        self.uri, self.cfg, self.password, self.ranges, self.label = uri, cfg, password, ranges, label

    def estimate_inmemory_data_size(self) -> int:
        return sum(hi - lo + 1 for _, lo, hi in self.ranges) * 150

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        tasks = []
        for what, lo, hi in self.ranges:
            meta = BlockMetadata(num_rows=None, size_bytes=(hi - lo + 1) * 150, input_files=None, exec_stats=None)
            tasks.append(ReadTask(_task(self.uri, self.cfg, self.password, what, lo, hi, self.label), meta, schema=RAW_SCHEMA))
        return tasks


def _task(uri, cfg, password, what, lo, hi, label):
    return lambda: read_range(uri, cfg, password, what, lo, hi, label)


def cut(lo: int | None, hi: int | None, n: int, per_task: int, parallelism: int) -> list[tuple[int, int]]:
    """Cut the id range ``lo..hi`` into task ranges of at most ``per_task``
    ids, and into at least ``parallelism`` ranges when it holds that many ids."""
    if not n or lo is None or hi is None:
        return []
    span = hi - lo + 1
    size = max(1, min(per_task, math.ceil(span / max(parallelism, 1))))
    return [(a, min(a + size - 1, hi)) for a in range(lo, hi + 1, size)]


class Neo4jSource:
    entities_from_triples = True

    def __init__(self, uri: str, cfg: Neo4jConfig, parallelism: int | None = None) -> None:
        parts = urllib.parse.urlsplit(uri)
        if parts.username or parts.password:
            raise SourceError("put no user or password in the Neo4j URI: set neo4j.user and neo4j.password_env")
        if not parts.hostname:
            raise SourceError(f"not a Neo4j URI: {uri}")
        self.uri, self.cfg, self.parallelism = uri, cfg, parallelism
        self.label = f"{uri.rstrip('/')}/{cfg.database or '(default database)'}"
        self.password = Secret(secret_from_env(cfg.password_env, what="neo4j.password_env"))

    def input_files(self) -> list[str]:
        return []

    def describe(self) -> dict:
        d = {"type": "neo4j", "path": self.label, "uri": self.uri, "database": self.cfg.database, "user": self.cfg.user}
        d.update({k: v for k, v in (("node_labels", self.cfg.node_labels), ("relationship_types", self.cfg.relationship_types)) if v})
        if getattr(self, "plan_counts", None):
            d["planned"] = self.plan_counts
        return d

    def plan(self) -> dict:
        import neo4j.exceptions as ne

        rels_q, nodes_q = plan_queries(self.cfg)
        params = {"types": list(self.cfg.relationship_types)} if self.cfg.relationship_types else {}

        def work(tx):
            r = tx.run(rels_q, params).single()
            n = tx.run(nodes_q).single()
            return dict(r.items()), dict(n.items())

        try:
            driver = open_driver(self.uri, self.cfg, self.password)
            try:
                with _session(driver, self.cfg) as session:
                    rels, nodes = session.execute_read(work)
            finally:
                driver.close()
        except (ne.Neo4jError, ne.DriverError, OSError, ValueError) as exc:
            raise SourceError(f"{self.label}: {describe_error(exc, self.password)}") from None
        return {"relationships": rels, "nodes": nodes}

    def datasource(self) -> Neo4jDatasource:
        from kgscale.kg.sources.sparql import cluster_cpus

        plan = self.plan()
        self.plan_counts = {k: v["n"] for k, v in plan.items()}
        par = self.parallelism or cluster_cpus()
        ranges = [("relationships", a, b) for a, b in cut(*[plan["relationships"][k] for k in ("lo", "hi", "n")], self.cfg.ids_per_task, par)]
        ranges += [("nodes", a, b) for a, b in cut(*[plan["nodes"][k] for k in ("lo", "hi", "n")], self.cfg.ids_per_task, par)]
        return Neo4jDatasource(self.uri, self.cfg, self.password, ranges, self.label)
