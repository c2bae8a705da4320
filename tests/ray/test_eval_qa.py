"""``kgscale eval qa`` end to end with a tiny random causal LM."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.cli import main
from kgscale.eval.choices import build_prompt, continuation_logprobs
from kgscale.models.backbone import BackboneConfig
from kgscale.models.inference import load_for_inference

QUESTIONS = [
    {"id": "q1", "question": "Where do fish live?", "choices": {"label": ["A", "B", "C"], "text": ["water", "sky", "sand"]}, "answer": "A"},
    {"id": "q2", "question": "What barks?", "choices": {"label": ["A", "B"], "text": ["a dog", "a tree"]}, "answer": "A"},
    {"id": "q3", "question": "What is cold?", "choices": {"label": ["A", "B", "C", "D"], "text": ["ice", "fire", "sun", "tea"]}, "answer": "A"},
]


def test_eval_qa_with_rationales_and_kgqa(tmp_path):
    data = tmp_path / "tiny.validation.jsonl"
    data.write_text("\n".join([json.dumps(q) for q in QUESTIONS] + ['{"id": "bad", "question": "?"}']) + "\n")
    rat = tmp_path / "rationales"
    rat.mkdir()
    pq.write_table(pa.table({
        "question_id": ["q1", "q2", "zzz"], "question": ["", "", ""], "answer": ["water", "a dog", "x"],
        "rationale": ["Fish breathe in water.", "Dogs bark.", "unused"],
        "choices": [["water"], ["a dog"], ["x"]], "flagged": [False, True, False]}), rat / "rationales.parquet")
    kgqa = tmp_path / "kgqa.jsonl"
    kgqa.write_text(json.dumps({"id": "k1", "question": "Capital of France?", "answers": ["Paris"]}) + "\n")
    out = tmp_path / "out"
    assert main(["eval", "qa", "--model", "tiny-llama", "--data", str(data), "--rationales", str(rat), "--kgqa", str(kgqa),
                 "--out", str(out), "qa.answer_length=4", "qa.dtype=float32", "ray.progress_bars=false"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    mc = m["multiple_choice"]["tiny"]
    assert mc["questions"] == 3 and m["rejected"]["total"] == 1
    assert mc["chance"] == np.mean([1 / 3, 1 / 2, 1 / 4])
    assert mc["rationales"] == {"joined": 1, "without_usable_rationale": 2}  # q2's is flagged
    assert mc["with_rationale"]["count"] == 1 and mc["no_rationale_same_questions"]["count"] == 1
    assert m["rationales"]["flagged"] == 1 and m["rationales"]["matched_no_question"] == 1
    assert m["kgqa"]["kgqa"]["questions"] == 1

    pred = pq.read_table(out / "predictions.parquet").to_pylist()
    assert len(pred) == 4  # 3 without context, 1 with
    # the recorded scores are the model's, computed here without Ray
    tok, model, _ = load_for_inference(BackboneConfig(model="tiny-llama"))
    for row in pred:
        q = next(x for x in QUESTIONS if x["id"] == row["question_id"])
        ctx = build_prompt(q["question"], "Fish breathe in water." if row["condition"] == "with_rationale" else None)
        sums, counts = continuation_logprobs(model, tok, [ctx] * len(row["choices"]), [" " + c for c in row["choices"]])
        np.testing.assert_allclose(row["logprob"], sums, atol=1e-4)
        # a random model scores choices nearly alike: the prediction must be a
        # best choice up to float noise from the actor's different batching
        norm = sums / counts
        assert norm[row["predicted"]] >= norm.max() - 1e-4
        assert row["predicted"] == int(np.argmax(np.asarray(row["logprob"]) / np.asarray(row["ntokens"])))
    acc = np.mean([r["predicted"] == r["answer"] for r in pred if r["condition"] == "no_rationale"])
    assert mc["no_rationale"]["accuracy"] == acc
    gen = pq.read_table(out / "kgqa_predictions.parquet").to_pylist()
    assert len(gen) == 1 and isinstance(gen[0]["generation"], str) and gen[0]["answers"] == ["Paris"]
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 1

    # the library call measures the same and writes nothing
    from kgscale.eval.qa import QASettings, evaluate_qa

    before = sorted(p.name for p in tmp_path.iterdir())
    ev = evaluate_qa("tiny-llama", QASettings(data=[data], rationales=rat, kgqa=[kgqa], answer_length=4, dtype="float32"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert ev.metrics["multiple_choice"] == m["multiple_choice"] and ev.metrics["kgqa"] == m["kgqa"]
    assert ev.predictions.to_pylist() == pred and len(ev.rejects) == 1


def test_eval_qa_needs_questions(tmp_path, capsys):
    assert main(["eval", "qa", "--model", "tiny-llama", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert main(["eval", "qa", "--model", "tiny-llama", "--data", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
