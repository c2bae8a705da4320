"""A stand-in for KALE rationales: WordNet glosses of a question's concept and its answer.

Until the KALE synthesis stage (``kgscale rationales``) has written real
teacher rationales, ``kgscale eval qa --rationales DIR`` can be measured with
this simple context, written in the same format (DIR/rationales.parquet:
question_id, question, answer, rationale, choices, flagged). Like a KALE
rationale it is written knowing the answer, so it shows how much a model
uses knowledge put in its context, not what it knows.

For each question, the question concept (CommonsenseQA's ``question_concept``)
and the answer text are linked to WN18RR entities by name (exact lemma, else
without a plural "s", else the last word); a lemma with several senses takes
the sense with the most training edges. The rationale is
``"<concept>: <gloss>. <answer>: <gloss>."`` with the parts that linked;
questions where neither links get no row.

    PYTHONPATH=$PWD python scripts/gloss_rationales.py --snapshot SNAP_WN18RR \
        --data ../shared/datasets/qa/commonsenseqa.validation.jsonl --out DIR
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def sense_index(snapshot) -> dict[str, str]:
    """lemma -> gloss of its best-connected sense."""
    from kgscale.kg.graph import CSRGraph

    degree = CSRGraph.from_snapshot(snapshot).degree()
    best: dict[str, tuple[int, int, str]] = {}
    e = snapshot.entities
    for i, name, desc in zip(e["id"].to_pylist(), e["name"].to_pylist(), e["description"].to_pylist()):
        name, desc = (name or "").strip().lower(), (desc or "").strip()
        if not name or not desc:
            continue
        key = (-int(degree[i]), int(i))
        if name not in best or key < best[name][:2]:
            best[name] = (*key, desc.split(";")[0].strip())  # the gloss without its examples
    return {k: v[2] for k, v in best.items()}


def link(text: str, glosses: dict[str, str]) -> tuple[str, str] | None:
    t = " ".join(text.lower().split())
    for cand in (t, t[:-1] if t.endswith("s") else None, t.split()[-1] if t else None):
        if cand and cand in glosses:
            return cand, glosses[cand]
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snapshot", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from kgscale.kg.snapshot import Snapshot
    from kgscale.output import atomic_dir, write_manifest

    glosses = sense_index(Snapshot(args.snapshot))
    cols = defaultdict(list)
    total = linked_concept = linked_answer = 0
    for line in open(args.data, encoding="utf-8"):
        if not line.strip():
            continue
        row = json.loads(line)
        total += 1
        labels, texts = row["choices"]["label"], row["choices"]["text"]
        answer = texts[labels.index(row["answer"])]
        parts = []
        c = link(row.get("question_concept", ""), glosses)
        a = link(answer, glosses)
        linked_concept += c is not None
        linked_answer += a is not None
        for hit in (c, a):
            if hit and f"{hit[0]}: {hit[1]}." not in parts:
                parts.append(f"{hit[0]}: {hit[1]}.")
        if not parts:
            continue
        cols["question_id"].append(str(row["id"]))
        cols["question"].append(row["question"])
        cols["answer"].append(answer)
        cols["rationale"].append(" ".join(parts))
        cols["choices"].append(list(texts))
        cols["flagged"].append(False)
    with atomic_dir(Path(args.out), overwrite=True) as tmp:
        pq.write_table(pa.table({k: cols[k] for k in ("question_id", "question", "answer", "rationale", "choices", "flagged")},
                                schema=pa.schema([("question_id", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                                                  ("rationale", pa.string()), ("choices", pa.list_(pa.string())),
                                                  ("flagged", pa.bool_())])), tmp / "rationales.parquet")
        write_manifest(tmp, "gloss-rationales (stand-in)", inputs={"snapshot": args.snapshot, "data": args.data},
                       counts={"questions": total, "rationales": len(cols["question_id"]),
                               "linked_concept": linked_concept, "linked_answer": linked_answer})
    print(f"{len(cols['question_id']):,} of {total:,} questions got a gloss context "
          f"(concept linked {linked_concept:,}, answer linked {linked_answer:,}) -> {args.out}")
    if cols["rationale"]:
        print("example:", cols["question"][0], "->", cols["rationale"][0])


if __name__ == "__main__":
    main()
