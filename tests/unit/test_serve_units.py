"""Serving pieces without Ray: request validation and limits, streaming text
with stop sequences, the entity index, the catalog's lookups, auth, config."""
from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pytest

from kgscale.config import ConfigError, build
from kgscale.models.backbone import BackboneConfig
from kgscale.serve import auth
from kgscale.serve.catalog import KGCatalog
from kgscale.serve.config import ServeConfig
from kgscale.serve.entity_index import EntityIndex, IndexMismatchError
from kgscale.serve.errors import ApiError
from kgscale.serve.prepare import RequestPreparer, parse
from kgscale.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, KGCompleteRequest
from kgscale.serve.runtime import GenerationParams, ModelRuntime, StreamText, embedding_ids
from kgscale.serve.server import model_options
from tests.serve_kg import write_snapshot


@pytest.fixture(scope="module")
def runtime():
    return ModelRuntime(BackboneConfig(model="tiny-llama"), torch_threads=1)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    from kgscale.kg.snapshot import Snapshot

    return Snapshot(write_snapshot(tmp_path_factory.mktemp("kg") / "snap"))


@pytest.fixture(scope="module")
def prep(runtime, snapshot):
    cfg = ServeConfig.model_validate({"model": "tiny-llama", "limits": {"max_inputs": 4, "max_k": 5},
                                      "kg": {"snapshot": str(snapshot.path)}})
    return RequestPreparer(cfg, runtime.tokenizer, runtime.info, KGCatalog(snapshot))


def refused(fn, *args) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize("body, words", [
    (b"", "empty"),
    (b"{", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"model": "tiny-llama"}', "input: required"),
    (b'{"model": "tiny-llama", "input": 5}', "input: must be a string, an array"),
    (b'{"model": "tiny-llama", "input": "x", "encoding_format": "hex"}', "encoding_format"),
    (b'{"model": "tiny-llama", "input": "x", "colour": 1}', "colour: unknown field"),
])
def test_embedding_bodies_refused_with_what_is_wrong(body, words):
    err = refused(parse, EmbeddingRequest, body)
    assert err.status == 400 and words in err.message


@pytest.mark.parametrize("body, words", [
    (b'{"model": "m", "prompt": "x", "max_tokens": "5"}', "max_tokens: Input should be a valid integer"),
    (b'{"model": "m", "prompt": "x", "temperature": 3}', "temperature"),
    (b'{"model": "m", "prompt": "x", "n": 2}', "n must be 1"),
    (b'{"model": "m", "prompt": "x", "stop": ["a","b","c","d","e"]}', "stop"),
])
def test_completion_bodies_refused(body, words):
    err = refused(parse, CompletionRequest, body)
    assert err.status == 400 and words in err.message


def test_embedding_limits(prep):
    ok = prep.embeddings(parse(EmbeddingRequest, b'{"model": "tiny-llama", "input": ["a cat", "a dog"]}'))
    assert len(ok.inputs) == 2 and all(x[-1] == prep.tokenizer.eos_token_id for x in ok.inputs)
    ids = prep.embeddings(parse(EmbeddingRequest, b'{"model": "tiny-llama", "input": [5, 6, 7]}'))
    assert ids.inputs == [[5, 6, 7, prep.tokenizer.eos_token_id]]
    for body, status, words in [
        (b'{"model": "tiny-llama", "input": []}', 400, "input is empty"),
        (b'{"model": "tiny-llama", "input": ["a","b","c","d","e"]}', 400, "at most 4"),
        (b'{"model": "tiny-llama", "input": ["a", "  "]}', 400, "input[1] is an empty string"),
        (b'{"model": "tiny-llama", "input": [[1], [99999999]]}', 400, "outside the vocabulary"),
        (b'{"model": "other", "input": "a"}', 404, "does not exist"),
        (b'{"model": "tiny-llama", "input": "a", "dimensions": 3}', 400, "64 dimensions"),
    ]:
        err = refused(prep.embeddings, parse(EmbeddingRequest, body))
        assert (err.status, words in err.message) == (status, True), err.message
    long = ("word " * 600).encode()
    err = refused(prep.embeddings, parse(EmbeddingRequest, b'{"model": "tiny-llama", "input": "' + long + b'"}'))
    assert "at most 512 tokens" in err.message


def test_generation_limits(prep):
    ok = prep.completion(parse(CompletionRequest, b'{"model": "tiny-llama", "prompt": "hi", "max_tokens": 7}'))
    assert ok.params.max_new_tokens == 7
    default = prep.chat(parse(ChatCompletionRequest, b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}'))
    assert default.params.max_new_tokens == 128 and default.inputs[0]
    for body, words in [
        (b'{"model": "tiny-llama", "prompt": "hi", "max_tokens": 5000}', "at most 1024"),
        (b'{"model": "tiny-llama", "prompt": "hi", "max_tokens": 512}', "context is 512"),
        (b'{"model": "tiny-llama", "prompt": ""}', "prompt[0] is empty"),
        (b'{"model": "tiny-llama", "prompt": ["a", "b"], "stream": true}', "stream takes one prompt"),
    ]:
        assert words in refused(prep.completion, parse(CompletionRequest, body)).message
    long = ("word " * 600).encode()
    err = refused(prep.chat, parse(ChatCompletionRequest, b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "' + long + b'"}]}'))
    assert "context is 512" in err.message


def test_kg_lookups(prep):
    head, rel, text, ids, known, exclude, k = prep.kg(parse(KGCompleteRequest, b'{"head": "Dog", "relation": "hypernym"}'), 8)
    assert (head, rel, k) == (0, 1, 5) and text == "dog: a domesticated canine ; is a kind of"
    assert sorted(known.tolist()) == [2, 3] and len(exclude) == 0  # mammal (train), animal (test)
    *_, exclude, _ = prep.kg(parse(KGCompleteRequest, b'{"head": "e1", "relation": "is a kind of", "filter_known": true}'), 8)
    assert sorted(exclude.tolist()) == [2, 3]
    _, _, text, *_ = prep.kg(parse(KGCompleteRequest, b'{"head": "animal", "relation": "hypernym", "inverse": true}'), 8)
    assert text.endswith("; inverse is a kind of")
    for body, status, words in [
        (b'{"head": "stool", "relation": "hypernym"}', 400, "ambiguous"),
        (b'{"head": "unicorn", "relation": "hypernym"}', 404, "unknown entity"),
        (b'{"head": "dog", "relation": "eats"}', 404, "unknown relation"),
        (b'{"head": "dog", "relation": "hypernym", "k": 6}', 400, "between 1 and 5"),
    ]:
        err = refused(prep.kg, parse(KGCompleteRequest, body), 8)
        assert (err.status, words in err.message) == (status, True), err.message
    assert "k: Input should be greater" in refused(parse, KGCompleteRequest, b'{"head": "dog", "relation": "x", "k": 0}').message


def test_stream_text_holds_back_stop_prefixes(runtime):
    tok = runtime.tokenizer
    ids = tok("Hello there. END of story", add_special_tokens=False)["input_ids"]
    st = StreamText(tok, ("END",), {tok.eos_token_id})
    pieces = [st.add([t]) for t in ids]
    pieces.append(st.finish())
    assert "".join(pieces) == "Hello there. " and st.stopped
    st = StreamText(tok, (), {tok.eos_token_id})
    assert "".join([st.add(ids[:3]), st.add([tok.eos_token_id] + ids[3:]), st.finish()]) == tok.decode(ids[:3])


def test_stream_equals_batch_generation(runtime):
    prompt = runtime.tokenizer("The capital of France")["input_ids"]
    params = GenerationParams(max_new_tokens=6, temperature=0)
    (batched,) = runtime.generate([prompt], params)
    pieces: list[str] = []
    streamed = runtime.stream(prompt, params, pieces.append, threading.Event())
    assert "".join(pieces) == streamed.text == batched.text and streamed.completion_tokens == 6
    # padding a batch changes nothing: each prompt's greedy completion is its own
    other = runtime.tokenizer("a")["input_ids"]
    assert runtime.generate([other, prompt], params)[1].text == batched.text


def test_embedding_is_unit_and_batch_independent(runtime):
    ids = embedding_ids(runtime.tokenizer, ["a dog", "the capital of a country in europe"], append_eos=True)
    both = runtime.embed(ids)
    assert np.allclose(np.linalg.norm(both, axis=1), 1, atol=1e-5)
    assert np.allclose(runtime.embed(ids[1:]), both[1:], atol=1e-5)


def test_entity_index_search_and_disk(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = EntityIndex(emb, np.array([0, 2, 3, 5, 6]), num_entities=7)
    q = emb[2]
    ids, scores = index.search(q, 3)
    assert ids[0] == 3 and np.isclose(scores[0], 1) and list(scores) == sorted(scores, reverse=True)
    ids, _ = index.search(q, 5, exclude=np.array([3, 4]))  # 4 is no candidate: ignored
    assert 3 not in ids and len(ids) == 4
    meta = {"model": {"model": "m"}, "pooling": "last", "max_length": 8}
    index.save(tmp_path / "idx", meta)
    again = EntityIndex.load(tmp_path / "idx", meta, 7)
    assert np.array_equal(again.embeddings, index.embeddings) and np.array_equal(again.ids, index.ids)
    with pytest.raises(IndexMismatchError, match="pooling"):
        EntityIndex.load(tmp_path / "idx", {**meta, "pooling": "mean"}, 7)


def test_auth():
    digest = hashlib.sha256(b"tok").hexdigest()
    auth.check(None, None)
    auth.check("Bearer tok", digest)
    for header in (None, "tok", "Bearer ", "Bearer wrong", "Basic tok"):
        assert refused(auth.check, header, digest).status == 401


def test_config():
    cfg = build(ServeConfig, {"model": "tiny-llama", "deployment": {"num_gpus": 0.5, "autoscaling": {
        "min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}}})
    assert cfg.http.host == "127.0.0.1" and cfg.model.model == "tiny-llama"
    opts = model_options(cfg)
    assert opts["ray_actor_options"]["num_gpus"] == 0.5 and "num_replicas" not in opts
    assert opts["autoscaling_config"]["max_replicas"] == 4 and opts["autoscaling_config"]["target_ongoing_requests"] == 8
    assert model_options(build(ServeConfig, {"model": "x", "deployment": {"replicas": 3}}))["num_replicas"] == 3
    for data, words in [
        ({"model": "x", "deployment": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}, "exceeds max_replicas"),
        ({"model": "x", "deployment": {"max_ongoing_requests": 4}}, "batches could never fill"),
        ({"model": "x", "batching": {"max_batch_sise": 4}}, "batching.max_batch_sise: unknown key"),
        ({"model": "x", "api_token": "abc"}, "secrets may not be written"),
    ]:
        with pytest.raises(ConfigError, match=words):
            build(ServeConfig, data)


def test_encoder_refuses_generation(snapshot):
    from kgscale.models.inference import load_inference_tokenizer
    from kgscale.serve.loading import describe

    model = BackboneConfig(model="tiny-bert")
    cfg = ServeConfig.model_validate({"model": "tiny-bert"})
    prep = RequestPreparer(cfg, load_inference_tokenizer(model), describe(model))
    err = refused(prep.completion, parse(CompletionRequest, b'{"model": "tiny-bert", "prompt": "hi"}'))
    assert "cannot generate" in err.message
    assert refused(prep.kg, parse(KGCompleteRequest, b'{"head": "dog", "relation": "r"}'), 0).status == 404
    assert prep.embeddings(parse(EmbeddingRequest, b'{"model": "tiny-bert", "input": "hi"}')).inputs


def test_trained_lora_directory_is_served_with_its_adapter(tmp_path, runtime):
    """A training output (adapter_config.json naming its base) loads with peft, merged."""
    import torch
    from peft import LoraConfig, get_peft_model

    from kgscale.models.backbone import load_model

    base = load_model(BackboneConfig(model="tiny-llama"))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "trained")
    cfg_path = tmp_path / "trained" / "adapter_config.json"
    data = json.loads(cfg_path.read_text())
    data["base_model_name_or_path"] = "tiny-llama"
    cfg_path.write_text(json.dumps(data))
    trained = ModelRuntime(BackboneConfig(model=str(tmp_path / "trained")), torch_threads=1, dtype="float32")
    ids = embedding_ids(runtime.tokenizer, ["a dog"], append_eos=True)
    with torch.inference_mode():
        merged = peft_model.eval()(input_ids=torch.tensor(ids), output_hidden_states=True).hidden_states[-1]
    assert trained.kind == "causal" and not np.allclose(trained.embed(ids), runtime.embed(ids), atol=1e-3)
    from kgscale.models.pooling import pool

    assert np.allclose(trained.embed(ids), pool(merged, torch.ones(1, len(ids[0])), "last").numpy(), atol=1e-4)


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from kgscale.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny-llama", "serve.batching.max_batch_size=0"]) == 2
    assert "serve.batching.max_batch_size" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny-llama", "--snapshot", str(tmp_path / "nosnap")]) == 2
    assert "snapshot not found" in capsys.readouterr().err
