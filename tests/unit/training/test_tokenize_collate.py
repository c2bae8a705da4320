"""Tokenisation stages (run here as plain functions, without Ray) and the
worker-side collation, with SmolLM2's real tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kgscale.kg.snapshot import Snapshot
from kgscale.objectives.kilm import ENTITY_TOKENS
from kgscale.samples.collate import collate
from kgscale.samples.kale import kale_samples
from kgscale.samples.kalm import kalm_samples
from kgscale.samples.kilm import kilm_samples
from kgscale.samples.tokenize import KaLMTokenize, KALETokenize, KILMTokenize
from tests.training_fixtures import tiny_snapshot, write_rationales

TINY = {"model": "tiny-llama"}


def as_batch(table) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in table.to_pydict().items()}


def ragged(table, column) -> list[list[int]]:
    return table[column].to_pylist()


@pytest.fixture(scope="module")
def snap(tmp_path_factory) -> Snapshot:
    return Snapshot(tiny_snapshot(tmp_path_factory.mktemp("snap")))


def test_kalm_tokenize_views_and_completion(snap):
    stage = KaLMTokenize(TINY, (), max_length=32, max_entity_length=3, lm_prompt="Q: {query} ->")
    tok = stage.tok
    out = stage(as_batch(kalm_samples(snap).slice(0, 4)))
    for q, k in zip(ragged(out, "query_input_ids"), ragged(out, "key_input_ids")):
        assert q[-1] == tok.eos_token_id and k[-1] == tok.eos_token_id
        assert len(k) <= 4  # 3 entity tokens + EOS
    first_query = tok.decode(ragged(out, "query_input_ids")[0][:-1])
    assert first_query.endswith(" ; hypernym") and first_query.startswith("dog: a")
    ids, labels = ragged(out, "lm_input_ids")[0], ragged(out, "lm_labels")[0]
    completion = [y for y in labels if y != -100]
    assert completion == ids[len(ids) - len(completion):]
    assert tok.decode(ids[: len(ids) - len(completion)]) == f"Q: {first_query} ->"
    assert completion[-1] == tok.eos_token_id
    assert out["query_id"].to_pylist() == kalm_samples(snap)["query_id"].to_pylist()[:4]


def test_kale_tokenize_same_answer_ids_in_both_views(tmp_path):
    stage = KALETokenize(TINY, (), max_length=64)
    out = stage(as_batch(kale_samples(write_rationales(tmp_path / "r"))))
    for wi, wl, oi, ol in zip(*(ragged(out, c) for c in ("with_input_ids", "with_labels", "without_input_ids", "without_labels"))):
        a_with = [y for y in wl if y != -100]
        a_without = [y for y in ol if y != -100]
        assert a_with == a_without and a_with == wi[-len(a_with):] == oi[-len(a_without):]
        assert len(wi) > len(oi)  # the rationale is in the first only
    text = stage.tok.decode(ragged(out, "with_input_ids")[0])
    assert "Rationale: dog hypernym canine." in text and text.endswith("Answer: canine<|im_end|>")
    assert not any(out["truncated"].to_pylist())
    short = KALETokenize(TINY, (), max_length=24)(as_batch(kale_samples(write_rationales(tmp_path / "r2"))))
    assert all(len(x) <= 24 for x in ragged(short, "with_input_ids")) and all(short["truncated"].to_pylist())


def test_kilm_tokenize_masks_description_and_noises_context(snap):
    stage = KILMTokenize({"model": "tiny-bart"}, ENTITY_TOKENS, max_length=96, decoder_start_token_id=2, seed=0)
    tok = stage.tok
    table = kilm_samples(snap, neighbours=3)
    out = stage(as_batch(table.slice(0, 3)))
    row = table.to_pylist()[0]
    src, labels = ragged(out, "input_ids")[0], ragged(out, "labels")[0]
    dec, desc = ragged(out, "decoder_input_ids")[0], ragged(out, "description_mask")[0]
    target_text = tok.decode(labels)
    assert target_text.startswith(f"<|im_start|><ent> {row['name']}</ent><ent_desc> {row['name']}<sep> {row['description']}</ent_desc>")
    assert dec == [2] + labels[:-1] and len(desc) == len(labels)
    assert tok.decode([y for y, m in zip(labels, desc) if m]) == " " + row["description"]
    ent_desc_end = tok.convert_tokens_to_ids("</ent_desc>")
    i = src.index(ent_desc_end)
    assert src[i - 1] == tok.mask_token_id and tok.decode(src[: i - 1]).endswith("<sep>")
    assert src.count(tok.mask_token_id) >= 2  # the description and at least one context span
    assert len(src) < len(labels)
    assert out == stage(as_batch(table.slice(0, 3)))  # the same noise every time


def test_collate_pads_and_masks():
    batch = {"query_input_ids": np.array([np.array([5, 6, 7]), np.array([8])], dtype=object),
             "lm_labels": np.array([np.array([-100, 4]), np.array([-100, -100, 9])], dtype=object),
             "query_id": np.array([3, 4])}
    out, tokens = collate(batch, pad_id=0)
    assert out["query_input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["query_attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["lm_labels"].tolist() == [[-100, 4, -100], [-100, -100, 9]]
    assert out["query_id"].dtype == torch.int64 and tokens == 4
    kept, _ = collate(batch, 0, keys=("query_input_ids", "query_attention_mask"))
    assert set(kept) == {"query_input_ids", "query_attention_mask"}
    with pytest.raises(KeyError, match="key_input_ids"):
        collate(batch, 0, keys=("key_input_ids",))


def test_kale_tokenize_without_a_rationale_reads_the_same_tokens_twice():
    batch = {"question_id": np.array(["a", "b"], dtype=object), "question": np.array(["dog?", "cat?"], dtype=object),
             "rationale": np.array(["dog hypernym canine.", ""], dtype=object),
             "answer": np.array(["canine", "feline"], dtype=object)}
    out = KALETokenize(TINY, (), max_length=64)(batch)
    with_ids, without_ids = ragged(out, "with_input_ids"), ragged(out, "without_input_ids")
    assert len(with_ids[0]) > len(without_ids[0]) and with_ids[1] == without_ids[1]
    assert ragged(out, "with_labels")[1] == ragged(out, "without_labels")[1]
