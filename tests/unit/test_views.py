"""One encoding of a view for training, evaluation and serving, whatever the
tokenizer adds: the same ids from every path, BOS included, and a query view
that never loses its relation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from kgscale.models.backbone import BackboneConfig, load_tokenizer, resolve
from kgscale.models.embed import tokenize_views
from kgscale.models.tokenize import query_view_texts, view_ids
from kgscale.samples.tokenize import KaLMTokenize
from kgscale.serve.runtime import embedding_ids

# FB15k-237's longest relation text (17 words)
LONG_RELATION = ("location capital of administrative division capital of. location administrative division capital "
                 "relationship administrative division")


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory):
    """tiny-llama with its tokenizer made Llama-style: BOS added by default."""
    import shutil

    src = resolve(BackboneConfig(model="tiny-llama"))
    out = tmp_path_factory.mktemp("bos-llama")
    for p in src.iterdir():
        if p.is_file():
            shutil.copy2(p, out / p.name)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    spec = json.loads(tok.to_str())
    bos = "<|im_start|>"
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {bos: {"id": bos, "ids": [tok.token_to_id(bos)], "tokens": [bos]}}}
    (out / "tokenizer.json").write_text(json.dumps(spec))
    return out


def test_training_evaluation_and_serving_encode_views_identically_bos_included(bos_model):
    tok = load_tokenizer(BackboneConfig(model=str(bos_model)))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert tok("dog").input_ids[0] == bos  # the tokenizer adds BOS by default
    rows = {"entity_text": np.array(["dog: a domesticated carnivorous mammal", "cat: a small feline"], dtype=object),
            "relation_text": np.array(["hypernym", LONG_RELATION], dtype=object),
            "inverse": np.array([False, True]),
            "answer_text": np.array(["canine: any member of the dog family", "feline: any member of the cat family"], dtype=object),
            "query_id": np.array([1, 2]), "answer_id": np.array([3, 4]), "head_id": np.array([0, 1])}
    stage = KaLMTokenize({"model": str(bos_model)}, (), max_length=24, max_entity_length=50, lm_prompt="{query}",
                         views=("query", "key", "head"), append_eos=True)
    out = stage(rows).to_pydict()
    queries = query_view_texts(tok, list(rows["entity_text"]), list(rows["relation_text"]), [False, True], 50, 24, True)
    answers = list(rows["answer_text"])
    evaluated = tokenize_views(tok, queries + answers, 24, append_eos=True)
    served = embedding_ids(tok, queries + answers, append_eos=True, max_length=24)
    for i, ids in enumerate(out["query_input_ids"] + out["key_input_ids"]):
        n = int(evaluated["attention_mask"][i].sum())
        assert ids == evaluated["input_ids"][i, :n].tolist() == served[i]
        assert ids[0] == bos and ids[-1] == eos and len(ids) <= 24


def test_a_query_view_keeps_its_whole_relation():
    tok = load_tokenizer(BackboneConfig(model="tiny-llama"))
    entity = "Barack Obama: " + "the 44th president of the United States, a lawyer and an author " * 4
    for max_length in (40, 64, 128):
        (view,) = query_view_texts(tok, [entity], [LONG_RELATION], [True], 50, max_length, True)
        assert view.endswith(" ; inverse " + LONG_RELATION)
        ids = view_ids(tok, [view], max_length, append_eos=True)[0]
        assert len(ids) <= max_length
        assert tok.decode(ids[:-1]).endswith(LONG_RELATION)  # nothing cut after the entity


def test_remembered_encodings_equal_the_tokenizers_and_encode_each_text_once(bos_model):
    from kgscale.models.tokenize import RememberedEncodings, truncate_texts

    tok = load_tokenizer(BackboneConfig(model=str(bos_model)))
    seen: list[str] = []

    class Counting:
        def __call__(self, texts, **kwargs):
            seen.extend(texts)
            return tok(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(tok, name)

    texts = ["dog: a domesticated carnivorous mammal that typically has a long snout", "cat: a small feline",
             "dog: a domesticated carnivorous mammal that typically has a long snout", LONG_RELATION]
    for max_texts in (1 << 20, 2):  # 2: the memory starts afresh within the run
        seen.clear()
        remembered = RememberedEncodings(Counting(), max_texts=max_texts)
        for _ in range(3):
            assert view_ids(remembered, texts, 12, True) == view_ids(tok, texts, 12, True)
            assert truncate_texts(remembered, texts, 5) == truncate_texts(tok, texts, 5)
            assert remembered(texts, add_special_tokens=False)["input_ids"] == tok(texts, add_special_tokens=False)["input_ids"]
        if max_texts > 3:
            # two settings (views cut at 12 ids; no special tokens, which truncate_texts uses too),
            # three distinct texts each, each encoded once
            assert sorted(seen) == sorted(list(set(texts)) * 2)
    # what it does not remember goes to the tokenizer as it is
    assert remembered("dog", return_tensors="pt")["input_ids"].shape[0] == 1
    assert remembered.eos_token_id == tok.eos_token_id


@pytest.mark.parametrize("model", ["tiny-llama", "bos", "all-minilm-l6-v2"])
def test_the_backend_encoding_gives_the_tokenizers_own_ids(model, bos_model):
    """kgscale.models.tokenize.encode asks a fast tokenizer's Rust backend
    directly; its ids must be the tokenizer call's for every setting, whatever
    truncation and padding the tokenizer file configures (MiniLM's pads and
    truncates to 128) and whatever was asked before."""
    from kgscale.models.tokenize import encode

    tok = load_tokenizer(BackboneConfig(model=str(bos_model) if model == "bos" else model))
    texts = ["dog: a domesticated carnivorous mammal", "", "  spaces  and\ttabs ", "Zürich — naïve café 東京",
             LONG_RELATION * 12, "a literal <|im_start|> and [SEP] and </s> in the text", "x"]
    for special in (True, False):
        for max_length in (None, 5, 16, 300):
            expected = tok(texts, add_special_tokens=special,
                           **({"truncation": True, "max_length": max_length} if max_length else {}))["input_ids"]
            assert encode(tok, texts, special, max_length) == expected, (special, max_length)
    long_ids = encode(tok, [LONG_RELATION * 12], True, None)[0]
    assert len(long_ids) > 128  # no truncation or padding left over from the file or an earlier call
    assert len(tok(["dog"], padding="max_length", max_length=8)["input_ids"][0]) == 8
    assert encode(tok, ["dog"], True, None) == tok(["dog"])["input_ids"]  # no padding after a padded call
    assert len(encode(tok, ["dog"], True, None)[0]) < 8


def test_encoding_leaves_the_garbage_collector_as_it_found_it():
    import gc

    from kgscale.models.tokenize import _gc_paused, encode

    tok = load_tokenizer(BackboneConfig(model="tiny-llama"))
    assert gc.isenabled()
    assert view_ids(tok, ["dog", "cat"], 8, True) and encode(tok, ["dog"], True, 8)
    assert gc.isenabled()
    gc.disable()
    try:
        view_ids(tok, ["dog"], 8, True)
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()
    with pytest.raises(RuntimeError):
        with _gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
