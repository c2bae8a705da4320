"""The HTTP battery: a real `kgscale serve` app on 127.0.0.1 with the default
exposure (no token), fed bad requests as an attacker and a careless client
would send them. Every one is a 4xx JSON error, none a 5xx, none hangs, and
the server answers normally afterwards; a slow request cannot stall others
(tokenising a large body, a long stop sequence), a chunked body is refused
while it is still arriving, and a client that leaves stops its generation."""
from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
import time

import pytest

MODEL = "tiny-llama"
BODY_LIMIT = 8 << 20
APP_ORIGIN = "http://app.example:3000"  # the one web origin the served app grants CORS


@pytest.fixture(scope="module")
def served():
    from ray import serve

    from kgscale.serve.config import ServeConfig
    from kgscale.serve.server import start

    old = os.environ.pop("KGSCALE_API_TOKEN", None)
    try:
        cfg = ServeConfig.model_validate({
            "model": MODEL, "app_name": "hostile", "http": {"port": 0, "max_body_bytes": BODY_LIMIT, "cors_origins": [APP_ORIGIN]},
            "deployment": {"num_cpus": 1, "torch_threads": 1}, "limits": {"max_inputs": 8}})
        url = start(cfg)
        host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        yield host, int(port)
    finally:
        serve.shutdown()
        if old is not None:
            os.environ["KGSCALE_API_TOKEN"] = old


def send(addr, method, path, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    out = r.status, r.read(), dict(r.getheaders())
    conn.close()
    return out


C, CH, E = "/v1/completions", "/v1/chat/completions", "/v1/embeddings"
OK_C = {"model": MODEL, "prompt": "The cat", "max_tokens": 1}
OK_CH = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def bad_requests() -> list[tuple]:
    """(method, path, body, headers): each must be answered with a 4xx."""
    cases = []
    # cross-site and rebinding: foreign Host names, and non-JSON content types
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil", "[::2]:80", "", "a" * 300):
        cases.append(("POST", C, OK_C, {"Host": host}))
        cases.append(("GET", "/v1/models", None, {"Host": host}))
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
                  "text/html", "application/xml", "json", "application/jsonx"):
        cases.append(("POST", C, OK_C, {"Content-Type": ctype}))
        cases.append(("POST", E, {"model": MODEL, "input": "x"}, {"Content-Type": ctype}))
    # bodies that are not what they claim
    for raw in (b"", b" ", b"{", b"[]", b"null", b"42", b'"x"', b"\xff\xfe", b'{"model": "\xff"}',
                b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                b'{"model": "tiny-llama", "prompt": "x", "max_tokens": 1e999}',
                b'{"model": "tiny-llama", "prompt": "x", "max_tokens": 99999999999999999999999}',
                b'{"model": "tiny-llama", "model": "tiny-llama", "prompt": 1}', b"\x00" * 100):
        cases.append(("POST", C, raw, None))
    # fields out of range or unsupported
    for patch in ({"max_tokens": 0}, {"max_tokens": -1}, {"max_tokens": 10**9}, {"max_tokens": "5"},
                  {"temperature": 5}, {"temperature": -1}, {"top_p": 0}, {"n": 2}, {"logit_bias": {"1": 2}},
                  {"stop": "ab" * 750}, {"stop": ["a"] * 5}, {"stop": ""}, {"stop": [1]}, {"stream": "yes"},
                  {"prompt": []}, {"prompt": ""}, {"prompt": [[]]}, {"prompt": [-1]}, {"prompt": [10**9]},
                  {"prompt": ["x"] * 9}, {"model": "gpt-4"}, {"model": None}, {"extra": 1}, {"echo": True},
                  {"prompt": "x" * 600_000}, {"seed": 2 ** 70}, {"suffix": "x"}, {"best_of": 3},
                  {"stream": True, "prompt": ["a", "b"]}, {"stream_options": {"include_usage": True}}):
        cases.append(("POST", C, {**OK_C, **patch}, None))
    for patch in ({"messages": []}, {"messages": [{"role": "tool", "content": "x"}]},
                  {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
                  {"messages": [{"role": "user"}], "tools": [{"type": "function"}]},
                  {"messages": "hi"}, {"max_tokens": 1, "max_completion_tokens": 1}, {"logprobs": True},
                  {"response_format": {"type": "json_object"}}, {"messages": [{"role": "user", "content": 5}]}):
        cases.append(("POST", CH, {**OK_CH, **patch}, None))
    for patch in ({"input": []}, {"input": ""}, {"input": [""]}, {"input": [[]]}, {"input": [-5]},
                  {"input": ["x"] * 9}, {"input": "word " * 100_000}, {"dimensions": 3}, {"encoding_format": "hex"},
                  {"input": {"text": "x"}}, {"input": [1.5]}):
        cases.append(("POST", E, {"model": MODEL, "input": "x", **patch}, None))
    # routes, methods, paths
    for method, path in (("GET", C), ("PUT", C), ("DELETE", E), ("OPTIONS", C), ("PATCH", CH), ("GET", "/v2/x"),
                         ("GET", "/../../etc/passwd"), ("GET", "/v1/models/../../x"), ("POST", "/v1/kg/complete"),
                         ("GET", "/%00"), ("GET", "/v1/" + "a" * 4000)):
        cases.append((method, path, None, None))
    cases.append(("POST", "/v1/kg/complete", {"head": "x", "relation": "y"}, None))  # kg is not configured: 404
    # a body over the limit, declared
    cases.append(("POST", E, b"{" + b" " * (BODY_LIMIT + 10) + b"}", None))
    return cases


def test_the_http_battery_gets_4xx_and_never_5xx(served):
    statuses, slow = [], []
    cases = bad_requests()
    for method, path, body, headers in cases:
        start = time.perf_counter()
        status, data, hdrs = send(served, method, path, body, headers, timeout=30)  # a hang fails here
        took = time.perf_counter() - start
        statuses.append(status)
        if took > 10:
            slow.append((method, path, took))
        assert 400 <= status < 500, (method, path, str(body)[:100], headers, status, data[:300])
        if status not in (405,) and method != "HEAD":  # every refusal says why, as JSON
            assert json.loads(data)["error"]["message"], (path, data[:200])
        assert "access-control-allow-origin" not in {k.lower() for k in hdrs}
    # alive and answering normally afterwards
    status, data, _ = send(served, "POST", C, OK_C)
    assert status == 200 and json.loads(data)["usage"]["completion_tokens"] == 1
    assert send(served, "GET", "/health")[0] == 200
    assert slow == []
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"\nHTTP battery: {len(cases)} requests, {sum(400 <= s < 500 for s in statuses)} 4xx "
          f"({counts}), 0 5xx, 0 hangs, server alive after")


def lower(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


def test_cors_is_granted_to_the_configured_origin_alone(served):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, authorization"}
    status, _, h = send(served, "OPTIONS", C, None, {"Origin": APP_ORIGIN, **preflight})
    h = lower(h)
    assert status == 204 and h["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in h["access-control-allow-methods"] and "content-type" in h["access-control-allow-headers"].lower()
    status, data, h = send(served, "POST", C, OK_C, {"Origin": APP_ORIGIN})
    assert status == 200 and lower(h)["access-control-allow-origin"] == APP_ORIGIN
    status, data, h = send(served, "POST", C, {**OK_C, "max_tokens": 0}, {"Origin": APP_ORIGIN})
    assert status == 400 and lower(h)["access-control-allow-origin"] == APP_ORIGIN  # the page can read why
    # any other origin, however close, gets no CORS header: its page cannot read an answer or send JSON
    for other in ("http://evil.example", "http://app.example:3001", "https://app.example:3000", "null",
                  "http://app.example:3000.evil.example", APP_ORIGIN + "/"):
        status, _, h = send(served, "OPTIONS", C, None, {"Origin": other, **preflight})
        assert 400 <= status < 500 and "access-control-allow-origin" not in lower(h), (other, status)
        status, _, h = send(served, "POST", C, OK_C, {"Origin": other})
        assert "access-control-allow-origin" not in lower(h), other
    # a foreign Host is refused before CORS is considered (DNS rebinding with an allowed page)
    status, _, h = send(served, "OPTIONS", C, None, {"Origin": APP_ORIGIN, "Host": "evil.example", **preflight})
    assert status == 421


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(served):
    s = socket.create_connection(served, timeout=30)
    s.sendall(f"POST {E} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b" " * 65536
    sent, answered = 0, False
    try:
        while sent < 32 * BODY_LIMIT:  # before, the ingress read on to the end, however far
            if select.select([s], [], [], 0)[0]:
                answered = True
                break
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        answered = True
    reply = s.recv(4096)
    s.close()
    assert answered and reply.startswith(b"HTTP/1.1 413"), (sent, reply[:200])
    # refused while the body still arrives (the proxy's buffers hold a few times the limit)


def _timed(fn, out, key):
    start = time.perf_counter()
    out[key] = fn()
    out[key + "_s"] = time.perf_counter() - start


def test_a_slow_request_does_not_stall_others(served):
    # tokenising ~7 MB runs off the event loop: /health answers meanwhile
    big = {"model": MODEL, "input": "lorem ipsum dolor " * 400_000}
    out = {}
    t = threading.Thread(target=_timed, args=(lambda: send(served, "POST", E, big)[0], out, "big"))
    t.start()
    time.sleep(0.5)
    _timed(lambda: send(served, "GET", "/health")[0], out, "health")
    t.join()
    assert out["big"] == 400 and out["health"] == 200  # too many tokens for the model, after tokenising
    # /health asked 0.5 s into the big request, and answered long before it ended
    assert out["health_s"] < 1.0 and out["big_s"] > out["health_s"] + 1.0, out
    big_s = out["big_s"]
    # the longest stop sequences allowed, on a 1-token completion, beside an embedding request
    stop = {**OK_C, "stop": ["ab" * 50] * 4}
    out = {}
    t = threading.Thread(target=_timed, args=(lambda: send(served, "POST", C, stop)[0], out, "stop"))
    t.start()
    _timed(lambda: send(served, "POST", E, {"model": MODEL, "input": "a cat"})[0], out, "embed")
    t.join()
    assert out["stop"] == 200 and out["embed"] == 200 and out["embed_s"] < 2, out
    print(f"\nstop-string case: 4 x 100-character stops, 1-token completion {out['stop_s']:.2f} s, "
          f"concurrent embedding {out['embed_s']:.2f} s; a 7 MB body took {big_s:.1f} s, /health beside it answered")


def test_a_client_that_leaves_stops_its_generation(served):
    long = {"model": MODEL, "prompt": ["The cat"] * 8, "max_tokens": 500, "temperature": 0.0}  # context 512
    start = time.perf_counter()
    assert send(served, "POST", C, long)[0] == 200
    full = time.perf_counter() - start
    # the same request, dropped after 0.3 s: the next request must not wait for it to finish
    s = socket.create_connection(served, timeout=30)
    body = json.dumps(long).encode()
    s.sendall(f"POST {C} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.3)
    s.close()
    time.sleep(0.3)
    start = time.perf_counter()
    assert send(served, "POST", C, OK_C)[0] == 200
    after = time.perf_counter() - start
    print(f"\ndropped request: a full 8 x 500-token completion takes {full:.1f} s; the next request after a drop "
          f"{after:.2f} s")
    assert after < full / 3
