"""Multiple-choice scoring throughput: the context's KV cache shared by its choices
against one pass over each (context, choice) pair.

The questions are CommonsenseQA's (``../shared/datasets/qa``), scored as
``kgscale eval qa`` scores them (the prompt of :func:`kgscale.eval.choices.build_prompt`,
each choice a continuation, SmolLM2-135M-Instruct). Side by side in this
process, on the same threads and dtype:

- one pass over every (context, choice) sequence, length-sorted micro-batches
  of 16 (:func:`kgscale.eval.choices.continuation_logprobs`): what
  log-likelihood harnesses do, and what kgscale did before;
- kgscale's :func:`kgscale.eval.choices.choice_logprobs`: each context once,
  its keys and values shared by its choices.

Reports questions/s (median of ``--repeats`` after a warm-up), the ratio, the
largest difference of the two log-probabilities and whether the predictions
agree.

    PYTHONPATH=$PWD python bench/qa_scoring.py [--questions 100] [--threads 2] [--dtype bfloat16]

Prints a table and a final JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    import torch

    from kgscale.eval.choices import build_prompt, choice_logprobs, continuation_logprobs, predictions, read_mc_jsonl
    from kgscale.kg.rejects import RejectLog
    from kgscale.models.backbone import BackboneConfig
    from kgscale.models.embed import torch_dtype
    from kgscale.models.inference import load_for_inference

    torch.set_num_threads(args.threads)
    qs = read_mc_jsonl(args.shared / "qa" / "commonsenseqa.validation.jsonl", RejectLog(None), limit=args.questions)
    contexts = [build_prompt(q.question) for q in qs]
    choices = [[" " + c for c in q.choices] for q in qs]
    dtype = torch_dtype(args.dtype, "cpu")
    tok, model, _ = load_for_inference(BackboneConfig(model=args.model), dtype=dtype)

    def per_pair():
        flat_c = [c for c, ch in zip(contexts, choices) for _ in ch]
        flat_k = [k for ch in choices for k in ch]
        s, n = continuation_logprobs(model, tok, flat_c, flat_k, micro_batch=args.micro_batch)
        out, j = [], 0
        for ch in choices:
            out.append((s[j:j + len(ch)], n[j:j + len(ch)]))
            j += len(ch)
        return out

    def shared():
        return choice_logprobs(model, tok, contexts, choices, micro_batch=args.micro_batch)

    rows, results = [], {}
    for name, fn in (("one pass a (context, choice) pair", per_pair), ("kgscale: context cache shared by its choices", shared)):
        results[name] = fn()  # warm-up, and the values compared below
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        rows.append((name, len(qs) / statistics.median(times)))
    (a_name, a), (b_name, b) = results.items()
    diff = max(float(np.abs(x[0] - y[0]).max()) for x, y in zip(a, b))
    pa_, _ = predictions([x[0].tolist() for x in a], [x[1].tolist() for x in a])
    pb_, _ = predictions([x[0].tolist() for x in b], [x[1].tolist() for x in b])
    agree = float((pa_ == pb_).mean())
    tokens = sum(len(tok(c)["input_ids"]) * len(ch) + sum(len(tok(k, add_special_tokens=False)["input_ids"]) for k in ch)
                 for c, ch in zip(contexts, choices))
    print(f"{len(qs)} CommonsenseQA questions, {sum(len(c) for c in choices)} choices, {tokens:,} tokens as pairs; "
          f"{args.model}, {str(dtype).replace('torch.', '')}, {args.threads} threads, median of {args.repeats}")
    print(f"{'scorer':<48} {'questions/s':>12} {'ratio':>7}")
    for name, qps in rows:
        print(f"{name:<48} {qps:>12.1f} {qps / rows[0][1]:>6.2f}x")
    print(f"largest log-probability difference {diff:.2e}; predictions agree on {agree:.1%}")
    print(json.dumps({"bench": "qa_scoring", "questions": len(qs), "dtype": str(dtype), "threads": args.threads,
                      "per_pair_qps": round(rows[0][1], 2), "shared_qps": round(rows[1][1], 2),
                      "ratio": round(rows[1][1] / rows[0][1], 3), "max_abs_diff": diff, "agree": agree}))


if __name__ == "__main__":
    main()
