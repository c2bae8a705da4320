"""SPARQL endpoints that misbehave, served for real on 127.0.0.1 (a pyoxigraph
store answers the queries; the server then caps, corrupts, redirects or
trickles its answers): a short page is re-read or a counted reject, a bad
plan an error naming it, credentials never leave their origin, answers are
bounded in size and time."""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyoxigraph as ox
import pytest

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.sources.base import SourceError
from kgscale.kg.sources.sparql import HttpEndpoint, QueryFailed, SparqlConfig, SparqlSource, plan_pages, read_pages

EX = "http://ex.org/"


class Endpoint:
    """A SPARQL endpoint over an in-memory pyoxigraph store, with a ``mode``
    that makes it hostile. ``seen`` records each request's Authorization."""

    def __init__(self, triples: int = 100, mode: str = "ok", cap: int = 10, redirect_to: str | None = None) -> None:
        self.store = ox.Store()
        for i in range(triples):
            self.store.add(ox.Quad(ox.NamedNode(f"{EX}s{i:03d}"), ox.NamedNode(EX + "p"), ox.NamedNode(f"{EX}o{i}")))
        self.mode, self.cap, self.redirect_to, self.seen = mode, cap, redirect_to, []
        ep = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ep.seen.append(self.headers.get("Authorization"))
                if ep.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", ep.redirect_to)
                    self.end_headers()
                    return
                query = urllib.parse.parse_qs(body.decode())["query"][0]
                answer = json.loads(ep.store.query(query).serialize(format=ox.QueryResultsFormat.JSON))
                rows = answer["results"]["bindings"]
                if ep.mode == "cap":
                    answer["results"]["bindings"] = rows[: ep.cap]
                elif ep.mode == "no_p" and "COUNT" in query:
                    answer = {"head": {"vars": ["x"]}, "results": {"bindings": [{"x": {"type": "literal", "value": "1"}}]}}
                elif ep.mode == "bad_count" and "COUNT" in query:
                    for r in rows:
                        r["n"] = {"type": "literal", "value": "many"}
                data = json.dumps(answer).encode()
                if ep.mode == "huge":
                    data = b" " * (3 << 20) + data
                self.send_response(200)
                self.send_header("Content-Type", "application/sparql-results+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if ep.mode == "trickle":
                    for i in range(0, len(data), 8):
                        self.wfile.write(data[i:i + 8])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(data)

            def do_GET(self):  # where urllib sends a POST redirected by 302
                ep.seen.append(self.headers.get("Authorization"))
                self.send_response(400)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/query"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(request):
    eps = []

    def make(**kw):
        eps.append(Endpoint(**kw))
        return eps[-1]

    yield make
    for e in eps:
        e.close()


def read_all(ep: Endpoint, page_size: int = 1000, **cfg):
    cfg = SparqlConfig(page_size=page_size, retries=0, **cfg)
    src = SparqlSource(ep.url, RdfConfig(), cfg)
    pages = plan_pages(src.plan(), cfg.page_size)
    rows = [r for t in read_pages(src.connect(), pages, "all", RdfConfig(), src.label, src.scope) for r in t.to_pylist()]
    return [r for r in rows if r["kind"] == "triple"], [r for r in rows if r["kind"] == "reject"]


@pytest.mark.parametrize("page_size", [1000, 30])
def test_a_capped_endpoint_is_read_in_pieces_of_its_cap(endpoint, page_size):
    # the endpoint returns at most 10 rows whatever LIMIT says: the read was 10 of 100, exit 0
    triples, rejects = read_all(endpoint(mode="cap", cap=10), page_size=page_size)
    assert rejects == [] and len({t["head"] for t in triples}) == 100


def test_a_page_the_endpoint_cannot_complete_is_a_reject_with_its_predicate_and_offset(endpoint):
    ep = endpoint(mode="cap", cap=10)
    cfg = SparqlConfig(page_size=1000, retries=0)
    src = SparqlSource(ep.url, RdfConfig(), cfg)
    pages = plan_pages({**src.plan(), EX + "p": 150}, cfg.page_size)  # the plan expects more than the store has
    rows = [r for t in read_pages(src.connect(), pages, "all", RdfConfig(), src.label, src.scope) for r in t.to_pylist()]
    (rej,) = [r for r in rows if r["kind"] == "reject"]
    assert rej["reason"].startswith(f"short page: predicate <{EX}p> planned 150 rows from row 0, the endpoint gave 100")
    assert rej["offset"] == 100 and len([r for r in rows if r["kind"] == "triple"]) == 100


@pytest.mark.parametrize("mode,message", [("no_p", r"has no \?p and \?n"), ("bad_count", "not an integer")])
def test_a_bad_planning_answer_is_an_error_naming_it(endpoint, mode, message):
    ep = endpoint(mode=mode)
    with pytest.raises(SourceError, match=message):
        SparqlSource(ep.url, RdfConfig(), SparqlConfig(retries=0)).plan()


def test_credentials_do_not_follow_a_redirect_to_another_origin(endpoint, monkeypatch):
    other = endpoint()
    first = endpoint(mode="redirect", redirect_to=other.url.replace("127.0.0.1", "localhost"))
    monkeypatch.setenv("KG_PW", "s3cret")
    conn = HttpEndpoint(first.url, SparqlConfig(user="u", password_env="KG_PW", retries=0), "s3cret")
    with pytest.raises(QueryFailed):  # a POST redirected by 302 turns into a GET without the query
        conn.select("SELECT * WHERE { ?s ?p ?o }")
    assert first.seen[0].startswith("Basic ") and other.seen == [None]


@pytest.mark.parametrize("mode,cfg,message", [
    ("huge", {"max_response_bytes": 1 << 20}, "response larger than 1048576 bytes"),
    ("trickle", {"timeout_s": 0.5}, "not complete within"),
])
def test_answers_are_bounded_in_size_and_time(endpoint, mode, cfg, message):
    ep = endpoint(mode=mode)
    conn = HttpEndpoint(ep.url, SparqlConfig(retries=0, **cfg))
    start = time.perf_counter()
    with pytest.raises(QueryFailed, match=message):
        conn.select(f"SELECT ?s ?o WHERE {{ ?s <{EX}p> ?o }}")
    assert time.perf_counter() - start < 5
