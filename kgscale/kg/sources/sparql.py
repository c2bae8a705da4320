"""RDF stores read through SPARQL: the embedded pyoxigraph store on disk
(``oxigraph:PATH``) and remote SPARQL 1.1 endpoints over HTTP.

Planning, on the driver, asks the store once how many statements each
predicate has (``GROUP BY ?p``). Each predicate is a partition of pages of
``sparql.page_size`` statements (ordered, so pages do not overlap), and the
pages are dealt to read tasks of about ``sparql.rows_per_task`` rows. Each
read task opens its own connection (a read-only store handle, or HTTP
requests), fetches its pages with a timeout and retries, and maps the
statements with the same :func:`~kgscale.kg.rdf.mapping.quads_to_raw` as
files, so the same statements give the same snapshot.

A page that still fails after its retries becomes a rejected row naming
the endpoint, the predicate and the page; the other pages are kept
(``--strict`` makes it fatal). A store that cannot be reached at planning
is an error naming it.
"""
from __future__ import annotations

import base64
import hashlib
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Iterator, Literal

import pyarrow as pa
import pyoxigraph as ox
from pydantic import Field
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from kgscale.config import StrictModel, secret_from_env
from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.mapping import quads_to_raw
from kgscale.kg.rdf.terms import QuadColumns, UnsupportedTerm
from kgscale.kg.schema import RAW_SCHEMA, REJECT, raw_table
from kgscale.kg.sources.base import SourceError


class SparqlConfig(StrictModel):
    # statements a query returns at most (one page); pages of a predicate
    # are ordered so that they partition it
    page_size: int = Field(50_000, gt=0)
    # statements a read task reads (pages are dealt to tasks up to this)
    rows_per_task: int = Field(200_000, gt=0)
    # seconds to wait for one HTTP response
    timeout_s: float = Field(60.0, gt=0)
    # tries per query after the first, on refused connections, timeouts, HTTP 5xx and 429
    retries: int = Field(3, ge=0)
    # first wait between tries (doubles each time)
    backoff_s: float = Field(0.5, ge=0)
    # which statements: "all" (default graph and every named graph), "default"
    # (only the default graph), "named" (only named graphs). Use "named" or
    # "default" for stores whose default graph is the union of the named graphs.
    graphs: Literal["all", "default", "named"] = "all"
    # HTTP basic authentication: user, and the environment variable holding the password
    user: str | None = None
    password_env: str | None = None
    # a response larger than this is refused (read as it arrives, never whole)
    max_response_bytes: int = Field(256 << 20, gt=0)


# --- connections: opened inside read tasks, never pickled -----------------------------------


class QueryFailed(Exception):
    """A query failed after its retries (the message never holds a secret)."""


class EmbeddedStore:
    """The on-disk pyoxigraph store, opened read-only (several processes may read it at once)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._store = None

    def select(self, query: str):
        if self._store is None:
            try:
                self._store = ox.Store.read_only(self.path)
            except OSError as exc:
                raise QueryFailed(f"cannot open the oxigraph store at {self.path}: {exc}") from None
        try:
            return list(self._store.query(query))
        except (SyntaxError, OSError, ValueError) as exc:
            raise QueryFailed(str(exc)) from None


@dataclass
class HttpEndpoint:
    url: str
    cfg: SparqlConfig
    password: str | None = None  # resolved on the driver from password_env

    def __repr__(self) -> str:  # never show the password
        return f"HttpEndpoint({self.url!r})"

    def select(self, query: str):
        body = urllib.parse.urlencode({"query": query}).encode()
        headers = {
            "Accept": "application/sparql-results+json",
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "kgscale",
        }
        if self.cfg.user:
            token = base64.b64encode(f"{self.cfg.user}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        wait, last = self.cfg.backoff_s, ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with _OPENER.open(req, timeout=self.cfg.timeout_s) as resp:
                    data = _read_bounded(resp, self.cfg.max_response_bytes, time.monotonic() + self.cfg.timeout_s)
                return list(ox.parse_query_results(data, ox.QueryResultsFormat.JSON))
            except ResponseRefused as exc:
                last = str(exc)
                break  # the same query would get the same answer
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                last = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
                if exc.code < 500 and exc.code != 429:
                    break  # the query itself is refused: trying again will not help
            except urllib.error.URLError as exc:
                last = f"cannot connect: {exc.reason}"
            except (TimeoutError, ConnectionError) as exc:
                last = f"no answer within {self.cfg.timeout_s:g} s" if isinstance(exc, TimeoutError) else f"connection failed: {exc}"
            except (SyntaxError, ValueError) as exc:
                last = f"unreadable results: {exc}"
        tries = attempt + 1
        raise QueryFailed(f"{last} (after {tries} tr{'y' if tries == 1 else 'ies'})")


class ResponseRefused(Exception):
    """An answer too large or too slow to accept."""


def _read_bounded(resp, limit: int, deadline: float, block: int = 1 << 20) -> bytes:
    """The body, read in blocks: refused past ``limit`` bytes or past the
    request's ``deadline`` (the socket timeout alone bounds each read, so a
    server trickling a byte a second never timed out)."""
    parts, size = [], 0
    while True:
        chunk = resp.read1(block) if hasattr(resp, "read1") else resp.read(block)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise ResponseRefused(f"response larger than {limit} bytes (sparql.max_response_bytes)")
        if time.monotonic() > deadline:
            raise ResponseRefused("response not complete within sparql.timeout_s")
        parts.append(chunk)


class _SameOriginAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the credentials to another origin
    (urllib copies every header, so a redirect handed the Basic password to
    whatever host it named)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for h in list(new.headers):
                if h.lower() == "authorization":
                    del new.headers[h]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _origin(url: str) -> tuple:
    p = urllib.parse.urlsplit(url)
    return p.scheme, p.hostname, p.port or {"http": 80, "https": 443}.get(p.scheme)


_OPENER = urllib.request.build_opener(_SameOriginAuth)


# --- queries ---------------------------------------------------------------------------------


def _pattern(graphs: str, p: str) -> str:
    if graphs == "default":
        return f"?s {p} ?o ."
    if graphs == "named":
        return f"GRAPH ?g {{ ?s {p} ?o }}"
    return f"{{ ?s {p} ?o }} UNION {{ GRAPH ?g {{ ?s {p} ?o }} }}"


def plan_query(graphs: str) -> str:
    return f"SELECT ?p (COUNT(*) AS ?n) WHERE {{ {_pattern(graphs, '?p')} }} GROUP BY ?p"


def page_query(graphs: str, predicate: str, limit: int | None, offset: int) -> str:
    iri = ox.NamedNode(predicate)  # validated: nothing but an IRI reaches the query text
    q = f"SELECT ?s ?o ?g WHERE {{ {_pattern(graphs, str(iri))} }}"
    if limit is not None:
        q += f" ORDER BY ?g ?s ?o LIMIT {limit} OFFSET {offset}"
    return q


@dataclass(frozen=True)
class Page:
    predicate: str
    offset: int
    limit: int | None  # None: the whole predicate in one query
    rows: int


def plan_pages(counts: dict[str, int], page_size: int) -> list[Page]:
    pages = []
    for p in sorted(counts):
        n = counts[p]
        if n <= page_size:
            pages.append(Page(p, 0, None, n))
        else:
            pages += [Page(p, off, page_size, min(page_size, n - off)) for off in range(0, n, page_size)]
    return pages


def deal(pages: list[Page], rows_per_task: int, parallelism: int) -> list[list[Page]]:
    """Deal pages to tasks of about ``rows_per_task`` rows (more, smaller
    tasks when that gives fewer than ``parallelism``)."""
    total = sum(p.rows for p in pages)
    target = max(1, min(rows_per_task, -(-total // max(parallelism, 1))))
    tasks, current, size = [], [], 0
    for page in pages:
        if current and size + page.rows > target:
            tasks.append(current)
            current, size = [], 0
        current.append(page)
        size += page.rows
    if current:
        tasks.append(current)
    return tasks


def read_pages(conn, pages: list[Page], graphs: str, rdf: RdfConfig, label: str, scope: str) -> Iterator[pa.Table]:
    """One read task: fetch each page, map it, yield raw rows. Plain function."""
    for page in pages:
        query = page_query(graphs, page.predicate, page.limit, page.offset)
        try:
            solutions = conn.select(query)
            if len(solutions) < page.rows:
                solutions = _complete(conn, graphs, page, solutions)
        except QueryFailed as exc:
            yield raw_table(1, kind=REJECT, file=label, offset=page.offset, raw=query,
                            reason=f"SPARQL query failed for predicate <{page.predicate}> at row {page.offset}: {exc}")
            continue
        except ShortPage as exc:
            yield raw_table(1, kind=REJECT, file=label, offset=exc.offset, raw=exc.query,
                            reason=f"short page: predicate <{page.predicate}> planned {page.rows} rows from row "
                                   f"{page.offset}, the endpoint gave {exc.got} (a result-row cap?); "
                                   f"the {exc.got} are kept")
            solutions = exc.solutions
        cols, bad = QuadColumns(), []
        p = ox.NamedNode(page.predicate)
        for i, sol in enumerate(solutions):
            try:
                cols.add_terms(sol["s"], p, sol["o"], sol["g"], page.offset + i)
            except UnsupportedTerm as exc:
                bad.append((page.offset + i, str(exc)))
        out = quads_to_raw(cols.table(), rdf, file=label, split=rdf.splits.default, scope=scope)
        if bad:
            rej = raw_table(len(bad), kind=REJECT, file=label, offset=pa.array([b[0] for b in bad], pa.int64()),
                            reason=pa.array([b[1] for b in bad], pa.string()))
            out = pa.concat_tables([out, rej])
        if out.num_rows:
            yield out


class ShortPage(Exception):
    def __init__(self, offset: int, query: str, got: int, solutions: list) -> None:
        self.offset, self.query, self.got, self.solutions = offset, query, got, solutions


def _complete(conn, graphs: str, page: Page, first: list) -> list:
    """A page that came back short of its planned rows (an endpoint that caps
    its results truncated the read silently: 10 of 100 triples, exit 0) is
    read again in ordered pieces of the size the endpoint did give; a piece
    that comes back empty before the plan is met raises :class:`ShortPage`
    with what was read. A store that changed since planning reads short too,
    and is reported the same way."""
    step = len(first)
    if step == 0:
        raise ShortPage(page.offset, page_query(graphs, page.predicate, page.limit, page.offset), 0, [])
    got: list = []
    at = page.offset
    while len(got) < page.rows:
        query = page_query(graphs, page.predicate, min(step, page.rows - len(got)), at)
        piece = conn.select(query)
        if not piece:
            raise ShortPage(at, query, len(got), got)
        got += piece
        at += len(piece)
    return got


def cluster_cpus() -> int:
    import ray

    return max(int(ray.cluster_resources().get("CPU", 1)), 1) if ray.is_initialized() else 1


class SparqlDatasource(Datasource):
    def __init__(self, tasks: list[list[Page]], connect, graphs: str, rdf: RdfConfig, label: str, scope: str) -> None:
        self.tasks, self.connect, self.graphs, self.rdf, self.label, self.scope = tasks, connect, graphs, rdf, label, scope

    def estimate_inmemory_data_size(self) -> int:
        return sum(p.rows for t in self.tasks for p in t) * 200

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        out = []
        self.places = [(self.label, pages[0].offset) for pages in self.tasks]  # for a reject if a task crashes
        for pages in self.tasks:
            rows = sum(p.rows for p in pages)
            meta = BlockMetadata(num_rows=None, size_bytes=rows * 200, input_files=None, exec_stats=None)
            out.append(ReadTask(_task(self.connect, pages, self.graphs, self.rdf, self.label, self.scope), meta, schema=RAW_SCHEMA))
        return out


def _task(connect, pages, graphs, rdf, label, scope):
    return lambda: read_pages(connect(), pages, graphs, rdf, label, scope)


class SparqlSource:
    """``oxigraph:PATH`` (embedded store) or an HTTP(S) SPARQL endpoint."""

    entities_from_triples = True

    def __init__(self, source: str, rdf: RdfConfig, cfg: SparqlConfig, parallelism: int | None = None) -> None:
        self.rdf, self.cfg, self.parallelism = rdf, cfg, parallelism
        if source.startswith("oxigraph:"):
            import os

            path = os.path.abspath(source.split(":", 1)[1])
            if not os.path.isdir(path):
                raise SourceError(f"oxigraph store not found: {path}")
            self.kind, self.label = "oxigraph", f"oxigraph:{path}"
            self.connect = _EmbeddedConnector(path)
        else:
            url = source.removeprefix("sparql+")
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SourceError(f"not a SPARQL endpoint URL: {source}")
            if parts.username or parts.password:
                raise SourceError("put no user or password in the endpoint URL: set sparql.user and sparql.password_env")
            password = secret_from_env(cfg.password_env, what="sparql.password_env") if cfg.password_env else None
            self.kind, self.label = "sparql", url
            self.connect = _HttpConnector(url, cfg, password)
        self.scope = hashlib.sha1(self.label.encode()).hexdigest()[:12]

    def input_files(self) -> list[str]:
        return []

    def describe(self) -> dict:
        d = {"type": self.kind, "path": self.label, "graphs": self.cfg.graphs}
        if getattr(self, "counts", None) is not None:  # what planning expects; a short read is a "short page" reject
            d["planned_rows"] = sum(self.counts.values())
            d["planned_predicates"] = len(self.counts)
        if self.kind == "sparql" and self.cfg.user:
            d["user"] = self.cfg.user
        return d

    def plan(self) -> dict[str, int]:
        try:
            rows = self.connect().select(plan_query(self.cfg.graphs))
        except QueryFailed as exc:
            raise SourceError(f"{self.label}: cannot plan the read: {exc}") from None
        counts = {}
        for sol in rows:
            p, n = sol["p"], sol["n"]
            if p is None or n is None:
                # an answer without the variables asked for would plan an empty read
                raise SourceError(f"{self.label}: the planning answer has no ?p and ?n (got {sol!r:.200})")
            try:
                count = int(n.value)
            except ValueError:
                raise SourceError(f"{self.label}: the planning answer counts {p} as {n.value[:50]!r}, not an integer") from None
            if count < 0:
                raise SourceError(f"{self.label}: the planning answer counts {p} as {count}")
            if type(p) is ox.NamedNode:
                counts[p.value] = count
        return counts

    def datasource(self) -> SparqlDatasource:
        counts = self.plan()
        self.counts = counts
        tasks = deal(plan_pages(counts, self.cfg.page_size), self.cfg.rows_per_task, self.parallelism or cluster_cpus())
        return SparqlDatasource(tasks, self.connect, self.cfg.graphs, self.rdf, self.label, self.scope)


class _EmbeddedConnector:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> EmbeddedStore:
        return EmbeddedStore(self.path)


class _HttpConnector:
    def __init__(self, url: str, cfg: SparqlConfig, password: str | None) -> None:
        self.url, self.cfg, self._password = url, cfg, password

    def __repr__(self) -> str:
        return f"_HttpConnector({self.url!r})"

    def __call__(self) -> HttpEndpoint:
        return HttpEndpoint(self.url, self.cfg, self._password)


def load_store(path: str, files: list[str], base_iri: str | None = None) -> int:
    """Create (or add to) the on-disk store at ``path`` from RDF files; returns
    the number of statements in the store. ``oxigraph load`` does the same."""
    store = ox.Store(path)
    for f in files:
        store.bulk_load(path=f, base_iri=base_iri)
    store.flush()
    n = len(store)
    del store
    return n
