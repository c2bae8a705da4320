"""Embeddings for evaluation: the right pooling per family, adapters applied."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kgscale.models.backbone import BackboneConfig, ModelLoadError, load_model, load_tokenizer, resolve
from kgscale.models.embed import Embedder, tokenize_views
from kgscale.models.inference import check_loadable, load_for_inference

TEXTS = ["stool: solid excretory product evacuated from the bowels",
         "chieftainship: the position of chieftain ; inverse has part", "dog"]


def test_minilm_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    path = resolve(BackboneConfig(model="all-minilm-l6-v2"))
    ours = Embedder({"model": "all-minilm-l6-v2"}, max_length=256, dtype="float32").embed(TEXTS)
    theirs = st.SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # bf16 weights (auto on CPUs with bf16 matrix units): the same directions
    bf16 = Embedder({"model": "all-minilm-l6-v2"}, max_length=256, dtype="bfloat16").embed(TEXTS)
    assert (bf16 * ours).sum(1).min() >= 0.999


def test_causal_lm_reads_the_eos_state():
    emb = Embedder({"model": "tiny-llama"}, max_length=8, dtype="float32")
    assert (emb.pooling, emb.append_eos) == ("last", True)
    tok = load_tokenizer(BackboneConfig(model="tiny-llama"))
    model = load_model(BackboneConfig(model="tiny-llama"))
    got = emb.embed(TEXTS)
    for i, text in enumerate(TEXTS):
        ids = tok(text, truncation=True, max_length=7)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            h = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        np.testing.assert_allclose(got[i], (h / h.norm()).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_tokenize_views_cuts_and_ends_with_eos():
    tok = load_tokenizer(BackboneConfig(model="tiny-llama"))
    enc = tokenize_views(tok, ["a b c d e f g h i j k", "a"], max_length=5, append_eos=True)
    assert enc["input_ids"].shape == (2, 5)
    assert enc["input_ids"][0, -1] == tok.eos_token_id and enc["attention_mask"][1].tolist() == [1, 1, 0, 0, 0]
    assert enc["input_ids"][1, 1] == tok.eos_token_id


def test_peft_adapter_directory_is_applied(tmp_path):
    peft = pytest.importorskip("peft")
    base_cfg = BackboneConfig(model="tiny-llama")
    base = load_model(base_cfg)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["gate_proj", "up_proj", "down_proj"],
                           init_lora_weights=False)  # random B: the adapter changes the outputs
    torch.manual_seed(0)
    wrapped = peft.get_peft_model(base, lora)
    wrapped.save_pretrained(tmp_path / "trained")
    load_tokenizer(base_cfg).save_pretrained(tmp_path / "trained")
    cfg = BackboneConfig(model=str(tmp_path / "trained"))
    assert check_loadable(cfg) == "causal"
    tok, merged, kind = load_for_inference(cfg)
    assert kind == "causal" and not hasattr(merged, "peft_config")
    ids = torch.tensor([tok("a dog ; hypernym")["input_ids"]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits
        np.testing.assert_allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
        assert not torch.allclose(load_model(base_cfg)(input_ids=ids).logits, expected, atol=1e-3)
    a = Embedder({"model": str(tmp_path / "trained")}).embed(TEXTS)
    b = Embedder({"model": "tiny-llama"}).embed(TEXTS)
    assert not np.allclose(a, b, atol=1e-3)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        check_loadable(BackboneConfig(model=str(tmp_path / "no-such-checkpoint")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        check_loadable(BackboneConfig(model=str(tmp_path / "empty")))


def test_entity_texts_are_cut_by_tokens_before_views_are_composed():
    from kgscale.models.tokenize import truncate_texts

    tok = load_tokenizer(BackboneConfig(model="tiny-llama"))
    texts = ["dog: a domestic animal that barks at strangers", "cat"]
    cut = truncate_texts(tok, texts, 3)
    assert cut[1] == "cat" and cut[0] == tok.decode(tok(texts[0], add_special_tokens=False)["input_ids"][:3])
    assert len(tok(cut[0], add_special_tokens=False)["input_ids"]) == 3


def test_encoder_decoder_embeds_with_its_encoder_mean():
    emb = Embedder({"model": "tiny-bart"}, dtype="float32")
    assert (emb.kind, emb.pooling, emb.append_eos) == ("seq2seq", "mean", False)
    tok = load_tokenizer(BackboneConfig(model="tiny-bart"))
    model = load_model(BackboneConfig(model="tiny-bart"))
    got = emb.embed(["a dog barks"])
    ids = tok(["a dog barks"], return_tensors="pt")
    with torch.no_grad():
        h = model.get_encoder()(**ids).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(got[0], (h / h.norm()).numpy(), atol=1e-5)


def test_one_embedder_serves_both_towers_of_a_two_tower_model(tmp_path):
    """``role`` given as both: each row embedded by its own role's tower (the
    key tower from the model's key_tower/ directory), exactly as two single-role
    Embedders would; a one-tower model is loaded once for both roles."""
    from kgscale.models.towers import KEY_TOWER

    base = BackboneConfig(model="tiny-bert")
    tok = load_tokenizer(base)
    for sub, seed in (("", 0), (KEY_TOWER, 1)):
        torch.manual_seed(seed)
        model = load_model(base)
        for p in model.parameters():  # a key tower that differs from the query tower
            p.data.add_(0.05 * torch.randn_like(p))
        model.save_pretrained(tmp_path / "two" / sub)
        tok.save_pretrained(tmp_path / "two" / sub)
    cfg = {"model": str(tmp_path / "two")}
    both = Embedder(cfg, dtype="float32", role=("key", "query"))
    assert both.towers["key"] is not both.towers["query"]
    roles = np.array(["key", "query", "key"])
    got = both({"row": np.arange(3), "text": np.array(TEXTS), "role": roles})
    assert set(got) == {"row", "embedding"}
    keys = Embedder(cfg, dtype="float32", role="key").embed(TEXTS)
    queries = Embedder(cfg, dtype="float32", role="query").embed(TEXTS)
    np.testing.assert_allclose(got["embedding"][[0, 2]], keys[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(got["embedding"][1], queries[1], atol=1e-6)
    assert not np.allclose(keys, queries, atol=1e-3)  # the towers do differ
    one = Embedder({"model": "tiny-bert"}, dtype="float32", role=["key", "query"])
    assert one.towers["key"] is one.towers["query"]
    with pytest.raises(ValueError, match="roles are query and key"):
        Embedder({"model": "tiny-bert"}, role="entity")


def test_pass_budget_follows_the_model_width_on_a_cpu_and_never_changes_the_embeddings():
    from kgscale.models.embed import embed_ids, pass_tokens
    from kgscale.models.tokenize import view_ids

    # a pass's hidden states about a million elements on a CPU; a GPU keeps large passes
    assert pass_tokens(384, "cpu") == (1 << 20) // 384
    assert pass_tokens(64, "cpu") == 16384 and pass_tokens(8192, "cpu") == 256
    assert pass_tokens(384, "cuda") == 16384
    emb = Embedder({"model": "all-minilm-l6-v2"}, max_length=64, dtype="float32")
    texts = [f"{t} {i}" * (1 + i % 4) for i, t in enumerate(TEXTS * 20)]
    rows = view_ids(emb.tokenizer, texts, 64, emb.append_eos)
    one_pass = embed_ids(emb.model, rows, emb.pooling, emb.pad_id, max_tokens=1 << 20, max_rows=1 << 20)
    # the default budget and a tiny one (a pass of one or two texts) give the same rows, in input order
    for budget in (None, 40):
        got = embed_ids(emb.model, rows, emb.pooling, emb.pad_id, max_tokens=budget)
        np.testing.assert_allclose(got, one_pass, atol=1e-5)
    np.testing.assert_allclose(emb.embed(texts), one_pass, atol=1e-5)


def test_narrow_models_embed_short_views_with_eager_attention_on_a_cpu_and_the_same_vectors():
    from kgscale.models.attention import EAGER_ON_CPU_UP_TO, embedding_attention

    assert embedding_attention("cpu", 64, 384) == "eager"
    assert embedding_attention("cpu", EAGER_ON_CPU_UP_TO, 64) == "eager"
    # wider models, longer views and GPUs keep the model's default (SDPA)
    assert embedding_attention("cpu", 64, 576) is None
    assert embedding_attention("cpu", EAGER_ON_CPU_UP_TO + 1, 64) is None
    assert embedding_attention("cpu", None, 64) is None
    assert embedding_attention("cuda", 64, 64) is None
    short = Embedder({"model": "tiny-llama"}, max_length=64, dtype="float32")
    long = Embedder({"model": "tiny-llama"}, max_length=EAGER_ON_CPU_UP_TO + 1, dtype="float32")
    assert short.model.config._attn_implementation == "eager"
    assert long.model.config._attn_implementation == "sdpa"
    np.testing.assert_allclose(short.embed(TEXTS), long.embed(TEXTS), atol=1e-5)
