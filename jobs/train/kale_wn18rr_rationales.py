"""Write KALE training input for WN18RR in the rationale stage's format.

Stand-in for ``kgscale rationales`` (the KALE synthesis stage) so that the
KALE job can run on WN18RR here: one multiple-choice question a sampled
training triple (h, r, t), "Which entity is <r> of <h>?", with t and three
random entities as choices, and the deterministic verbalisation of the fact
as its rationale (what the synthesis stage's path verbaliser falls back to
without a teacher). Columns: question_id, question, answer, rationale,
choices, flagged.

    python jobs/kale_wn18rr_rationales.py runs/wn18rr runs/kale_wn18rr_rationales [--n 2048]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.kg.snapshot import Snapshot
from kgscale.output import atomic_dir, write_manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshot")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    snap = Snapshot(args.snapshot)
    rng = np.random.default_rng(args.seed)
    t = snap.triples("train")
    ents = snap.entities
    names = dict(zip(ents["id"].to_pylist(), ents["name"].to_pylist()))
    descs = dict(zip(ents["id"].to_pylist(), ents["description"].to_pylist()))
    rels = dict(zip(snap.relations["id"].to_pylist(), snap.relations["text"].to_pylist()))
    rows = []
    for i in rng.choice(t.num_rows, size=min(args.n, t.num_rows), replace=False):
        h, r, tl = (int(t[c][int(i)].as_py()) for c in ("head", "relation", "tail"))
        distractors = [names[int(e)] for e in rng.choice(snap.num_entities, size=3, replace=False)]
        choices = distractors + [names[tl]]
        rng.shuffle(choices)
        rows.append({
            "question_id": f"wn18rr-{int(i)}",
            "question": f"Which entity is {rels[r]} of {names[h]}?",
            "answer": names[tl],
            "rationale": f"{names[h]}: {descs[h]}. {names[h]} {rels[r]} {names[tl]}. {names[tl]}: {descs[tl]}.",
            "choices": choices,
            "flagged": False,
        })
    with atomic_dir(Path(args.out), overwrite=True) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp / "rationales.parquet")
        write_manifest(tmp, "rationales", source=str(args.snapshot), teacher="verbaliser (one-hop facts)",
                       counts={"questions": len(rows)})
    print(f"wrote {len(rows)} questions with verbalised rationales to {args.out}")


if __name__ == "__main__":
    main()
