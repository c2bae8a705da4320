"""The served application end to end: a real Ray Serve app on 127.0.0.1
(tiny-llama with random weights, a small KG), called by the official
``openai`` client, by curl and by raw HTTP. One app (plus a second with a
tiny queue for the 503 test) for the whole module: starting one costs ~20 s.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from kgscale.models.backbone import BackboneConfig
from kgscale.serve.runtime import GenerationParams, ModelRuntime, embedding_ids
from tests.serve_kg import write_snapshot

TOKEN = "test-token-0123"
MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from ray import serve

    from kgscale.serve.config import ServeConfig
    from kgscale.serve.server import start

    snap = write_snapshot(tmp_path_factory.mktemp("kg") / "snap")
    index_dir = tmp_path_factory.mktemp("idx") / "index"
    old = os.environ.get("KGSCALE_API_TOKEN")
    os.environ["KGSCALE_API_TOKEN"] = TOKEN
    try:
        cfg = ServeConfig.model_validate({
            "model": MODEL, "http": {"port": 0, "max_body_bytes": 65536},
            "deployment": {"num_cpus": 1, "torch_threads": 1},
            "limits": {"max_inputs": 8, "max_k": 5},
            "kg": {"snapshot": str(snap), "index_dir": str(index_dir)}})
        url = start(cfg)
        # the same model with a one-place queue, for the 503 test
        small = cfg.model_copy(update={"app_name": "tiny-queue", "kg": None,
                                       "http": cfg.http.model_copy(update={"route_prefix": "/q"})})
        small = ServeConfig.model_validate({**small.model_dump(mode="json"), "batching": {"max_batch_size": 1},
                                            "deployment": {"num_cpus": 1, "torch_threads": 1,
                                                           "max_ongoing_requests": 1, "max_queued_requests": 1}})
        url_q = start(small)
        yield {"url": url, "url_q": url_q, "index_dir": index_dir, "snapshot": snap}
    finally:
        serve.shutdown()
        if old is None:
            os.environ.pop("KGSCALE_API_TOKEN", None)
        else:
            os.environ["KGSCALE_API_TOKEN"] = old


@pytest.fixture(scope="module")
def local():
    """The same model in this process, to check what the server computes."""
    return ModelRuntime(BackboneConfig(model=MODEL), torch_threads=1)


@pytest.fixture(scope="module")
def client(served):
    import openai

    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=TOKEN, max_retries=0, timeout=60)


def http(url: str, body=None, *, token: str | None = TOKEN, method: str | None = None, raw: bytes | None = None,
         timeout: float = 60):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def test_openai_embeddings_match_the_model(client, local):
    texts = ["a small domesticated feline", "the capital of france"]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    b64 = client.embeddings.create(model=MODEL, input=texts)  # the client's default: base64
    expected = local.embed(embedding_ids(local.tokenizer, texts, append_eos=True))
    got = np.array([d.embedding for d in floats.data])
    assert got.shape == (2, 64) and np.allclose(got, expected, atol=1e-5)
    assert np.allclose(np.array([d.embedding for d in b64.data]), expected, atol=1e-5)
    assert [d.index for d in floats.data] == [0, 1] and floats.usage.prompt_tokens > 0
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_openai_chat_and_completions(client, local):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a mammal."}]
    chat = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    prompt = local.tokenizer(local.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                             add_special_tokens=False)["input_ids"]
    (expected,) = local.generate([prompt], GenerationParams(max_new_tokens=6, temperature=0))
    assert chat.choices[0].message.content == expected.text and chat.choices[0].message.role == "assistant"
    assert chat.usage.prompt_tokens == len(prompt) and chat.usage.completion_tokens == expected.completion_tokens

    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens

    comp = client.completions.create(model=MODEL, prompt=["Once upon a time", "The cat"], max_tokens=5, temperature=0)
    want = local.generate([local.tokenizer(p)["input_ids"] for p in ("Once upon a time", "The cat")],
                          GenerationParams(max_new_tokens=5, temperature=0))
    assert [c.text for c in comp.choices] == [w.text for w in want]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The cat", max_tokens=5, temperature=0, stream=True))
    assert streamed == want[1].text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_kg_completion(served, local):
    body = json.dumps({"head": "dog", "relation": "hypernym", "k": 5})
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json",
                          "-d", body, served["url"] + "/v1/kg/complete"], capture_output=True, text=True, timeout=60)
    res = json.loads(out.stdout)
    assert res["query"]["head"]["key"] == "e1" and res["query"]["text"] == "dog: a domesticated canine ; is a kind of"
    # the scores are the cosines of the query view against every entity's tail view
    from kgscale.kg.snapshot import Snapshot

    texts = Snapshot(served["snapshot"]).entity_texts
    ents = local.embed(embedding_ids(local.tokenizer, texts, append_eos=True, max_length=64))
    q = local.embed(embedding_ids(local.tokenizer, [res["query"]["text"]], append_eos=True, max_length=64))[0]
    cos = ents @ q
    top = np.argsort(-cos, kind="stable")[:5]
    assert [r["id"] for r in res["results"]] == top.tolist()
    assert np.allclose([r["score"] for r in res["results"]], cos[top], atol=1e-4)
    assert {r["key"]: r["known"] for r in res["results"]}.get("e4") in (True, None)
    # filtered: the known answers (mammal e4 from train, animal e3 from test) are gone
    status, flt, _ = http(served["url"] + "/v1/kg/complete", {"head": "e1", "relation": "is a kind of", "k": 5,
                                                              "filter_known": True})
    assert status == 200 and flt["filtered"] == 2 and not {"e3", "e4"} & {r["key"] for r in flt["results"]}
    # the index was written and is what a restart loads
    assert (served["index_dir"] / "entity_embeddings.npy").is_file()
    assert np.allclose(np.load(served["index_dir"] / "entity_embeddings.npy"), ents, atol=1e-5)


def test_auth_and_health(served):
    url = served["url"]
    assert http(url + "/v1/models", token=None)[0] == 401
    status, body, _ = http(url + "/v1/models", token="wrong")
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body, _ = http(url + "/health", token=None)
    assert status == 200 and body["status"] == "ok" and body["entity_index"] == 8


def test_bad_requests_then_a_good_one(served):
    url = served["url"]
    ok_embed = {"model": MODEL, "input": "hello"}
    battery = [
        ("/v1/embeddings", None, b"{not json", 400),
        ("/v1/embeddings", None, b"\xff\xfe\x00garbage", 400),
        ("/v1/embeddings", None, b"", 400),
        ("/v1/embeddings", None, b"[]", 400),
        ("/v1/embeddings", {"model": MODEL, "input": 12}, None, 400),
        ("/v1/embeddings", {"model": MODEL, "input": []}, None, 400),
        ("/v1/embeddings", {"model": MODEL, "input": ["x"] * 9}, None, 400),
        ("/v1/embeddings", {"model": MODEL, "input": "word " * 700}, None, 400),
        ("/v1/embeddings", {"model": MODEL, "input": [[-1, 2]]}, None, 400),
        ("/v1/embeddings", {"model": MODEL, "input": [10 ** 12]}, None, 400),
        ("/v1/embeddings", {"model": "gpt-4", "input": "x"}, None, 404),
        ("/v1/embeddings", None, b'{"model": "tiny-llama", "input": "' + b"a" * 70000 + b'"}', 413),
        ("/v1/chat/completions", {"model": MODEL, "messages": []}, None, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, None, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
         None, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 10 ** 6},
         None, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "word " * 600}]}, None, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "temperature": "hot"}, None, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "stream": "yes"}, None, 400),
        ("/v1/completions", {"model": MODEL, "prompt": [[]]}, None, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "seed": 2 ** 70}, None, 400),
        ("/v1/kg/complete", {"head": "unicorn", "relation": "hypernym"}, None, 404),
        ("/v1/kg/complete", {"head": "dog", "relation": "eats"}, None, 404),
        ("/v1/kg/complete", {"head": "stool", "relation": "hypernym"}, None, 400),
        ("/v1/kg/complete", {"head": "dog", "relation": "hypernym", "k": 0}, None, 400),
        ("/v1/kg/complete", {"head": "dog", "relation": "hypernym", "k": 6}, None, 400),
        ("/v1/kg/complete", {"head": "dog", "relation": "hypernym", "k": 2.5}, None, 400),
        ("/v1/kg/complete", {"head": ["dog"], "relation": "hypernym"}, None, 400),
        ("/v1/nothing", ok_embed, None, 404),
    ]
    for path, body, raw, want in battery:
        status, reply, _ = http(url + path, body, raw=raw)
        assert status == want, (path, body if raw is None else raw[:40], status, reply)
        assert reply["error"]["message"], reply
    assert http(url + "/v1/embeddings", method="GET")[0] == 405
    # odd but valid: answered, not a 500
    status, reply, _ = http(url + "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 2,
                                                      "temperature": 1e-9, "top_p": 1e-9, "seed": -5})
    assert status == 200, reply
    status, reply, _ = http(url + "/v1/embeddings", ok_embed)
    assert status == 200 and len(reply["data"][0]["embedding"]) == 64
    assert http(url + "/health")[0] == 200


def test_full_queue_answers_503_and_recovers(served):
    from concurrent.futures import ThreadPoolExecutor

    url = served["url_q"] + "/v1/completions"
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 120, "temperature": 0}
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: http(url, body, timeout=120), range(12)))
    codes = sorted(status for status, _, _ in replies)
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    _, full, headers = next(r for r in replies if r[0] == 503)
    assert full["error"]["message"] and {k.lower(): v for k, v in headers.items()}.get("retry-after") == "1"
    status, reply, _ = http(url, {**body, "max_tokens": 3})
    assert status == 200 and reply["choices"][0]["finish_reason"] == "length"
