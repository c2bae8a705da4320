"""Multiple-choice log-likelihoods and KGQA answer matching."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kgscale.eval.choices import build_prompt, choice_logprobs, continuation_logprobs, predictions, read_mc_jsonl
from kgscale.eval.kgqa import first_answer, normalize, read_questions, score
from kgscale.kg.rejects import RejectLog
from kgscale.models.backbone import BackboneConfig
from kgscale.models.inference import load_for_inference


def test_continuation_logprobs_equal_full_forward():
    tok, model, _ = load_for_inference(BackboneConfig(model="tiny-llama"))
    contexts = ["Question: where do dogs live?\nAnswer:", "Question: x\nAnswer:", "Q"]
    conts = [" in a kennel", " y", " a much longer continuation of several tokens"]
    sums, counts = continuation_logprobs(model, tok, contexts, conts, micro_batch=2)
    for ctx, cont, s, n in zip(contexts, conts, sums, counts):
        c = tok(ctx)["input_ids"]
        k = tok(cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([c + k])).logits[0].float(), -1)
        assert n == len(k)
        assert s == pytest.approx(sum(lp[len(c) + j - 1, k[j]].item() for j in range(len(k))), abs=1e-4)


def test_choices_sharing_their_context_score_as_each_pair_alone():
    """The context's KV cache shared by its choices gives each choice the
    log-probability a pass over context + choice gives: contexts of different
    lengths in one micro-batch (right-padded), 1-5 choices of 1-9 tokens,
    micro-batches split mid-way, and an overlong context cut from the left."""
    tok, model, _ = load_for_inference(BackboneConfig(model="tiny-llama"))
    contexts = ["Question: where do dogs live?\nAnswer:", "Question: x\nAnswer:", "Q",
                "Question: " + "very " * 30 + "long?\nAnswer:"]
    choices = [[" in a kennel", " outside", " with people who love them very much", " zoo", " house"],
               [" y"], [" a", " b c"], [" no", " yes"]]
    for micro_batch, max_length in ((16, 512), (3, 512), (1, 512), (16, 24)):
        got = choice_logprobs(model, tok, contexts, choices, micro_batch=micro_batch, max_length=max_length)
        for ctx, ch, (sums, counts) in zip(contexts, choices, got):
            want_s, want_n = continuation_logprobs(model, tok, [ctx] * len(ch), ch, max_length=max_length)
            assert counts.tolist() == want_n.tolist()
            assert sums == pytest.approx(want_s, abs=1e-4), (micro_batch, max_length, ctx)


def test_long_context_is_cut_from_the_left():
    tok, model, _ = load_for_inference(BackboneConfig(model="tiny-llama"))
    long_ctx = "word " * 200 + "Answer:"
    s_cut, n_cut = continuation_logprobs(model, tok, [long_ctx], [" yes"], max_length=16)
    k = tok(" yes", add_special_tokens=False)["input_ids"]
    seq = (tok(long_ctx)["input_ids"] + k)[-16:]
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0].float(), -1)
    assert n_cut[0] == len(k)
    assert s_cut[0] == pytest.approx(sum(lp[16 - len(k) + j - 1, k[j]].item() for j in range(len(k))), abs=1e-4)


def test_length_normalised_prediction_differs_from_sum():
    # choice 0: two tokens at -1 each (mean -1); choice 1: one token at -1.5
    by_mean, by_sum = predictions([[-2.0, -1.5]], [[2, 1]])
    assert by_mean.tolist() == [0] and by_sum.tolist() == [1]


def test_prompt_with_and_without_rationale():
    assert build_prompt("Why?") == "Question: Why?\nAnswer:"
    assert build_prompt("Why?", " Because. ") == "Because.\nQuestion: Why?\nAnswer:"


def test_read_mc_jsonl_rejects_bad_rows(tmp_path):
    good = {"id": "q1", "question": "Q?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answer": "B"}
    lines = [json.dumps(good), "{not json", json.dumps({**good, "answer": "C"}),
             json.dumps({k: v for k, v in good.items() if k != "question"}), "",
             json.dumps({**good, "id": "q2", "choices": {"label": ["A"], "text": ["x"]}})]
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rejects = RejectLog()
    qs = read_mc_jsonl(path, rejects)
    assert [(q.id, q.answer, q.choices) for q in qs] == [("q1", 1, ["x", "y"])]
    assert rejects.summary()["total"] == 4
    rejects.write(tmp_path / "rejects.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 3, 4, 6]
    assert "answer not among the labels" in rows[1]["reason"] and "missing field: question" in rows[2]["reason"]


def test_kgqa_exact_match_and_hits():
    answers = ["New York City", "Big Apple"]
    assert score("new york city", answers) == (True, True)
    assert score("The Big Apple.\nIt is large", answers) == (True, True)
    assert score("It is New York City, of course", answers) == (False, True)  # mentioned, not first
    assert score("York", answers) == (False, False)
    assert score("", answers) == (False, False)
    assert normalize("The  dog_house!") == "dog house"
    assert first_answer("Paris, France; Europe\nmore") == "Paris"


def test_read_kgqa_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join([json.dumps({"id": 7, "question": "Q1?", "answers": ["a", "b"]}),
                               json.dumps({"question": "Q2?", "answers": "c"}),
                               json.dumps({"question": "Q3?"}),
                               json.dumps({"answers": ["d"]})]) + "\n")
    rejects = RejectLog()
    qs = read_questions(path, rejects)
    assert [(q["id"], q["answers"]) for q in qs] == [("7", ["a", "b"]), ("q:1", ["c"])]
    assert rejects.summary()["total"] == 2


def test_qa_data_may_name_a_registry_dataset(shared_datasets, monkeypatch):
    """`kgscale eval qa --data dataset:commonsenseqa`, as `kgscale run` accepts it."""
    from kgscale.config import ConfigError, build
    from kgscale.eval.qa import QAConfig

    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))
    cfg = build(QAConfig, {"out": "x", "model": "tiny-llama", "data": ["dataset:commonsenseqa"]}, section="qa")
    assert cfg.data[0].name.startswith("commonsenseqa") and cfg.data[0].is_file()
    assert len(read_mc_jsonl(cfg.data[0], RejectLog())) == 1221
    with pytest.raises(ConfigError, match=r"qa\.data: .*unknown dataset 'nosuch'"):
        build(QAConfig, {"out": "x", "model": "tiny-llama", "data": ["dataset:nosuch"]}, section="qa")


def test_paired_difference_counts_the_questions_both_answered():
    import numpy as np

    from kgscale.eval.qa import bootstrap_interval
    from kgscale.pipeline.report import _paired

    a = {"q1": True, "q2": True, "q3": False, "q5": True}
    b = {"q1": True, "q2": False, "q3": False, "q4": True, "q6": False}
    p = _paired(a, b)
    assert p["questions"] == 3 and p["difference"] == round(1 / 3, 4)
    assert p["only_first_right"] == 1 and p["only_second_right"] == 0
    assert p["ci95"] == bootstrap_interval(np.array([0.0, 1.0, 0.0]))
    same = _paired(a, a)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
