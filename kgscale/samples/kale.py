"""KALE training samples from a rationale stage's output.

The rationale stage (``kgscale rationales``) writes ``rationales.parquet``
with at least the string columns ``question_id``, ``question``, ``answer``
(the answer text), ``rationale``, plus ``choices`` (list of strings, may be
empty) and ``flagged`` (a rationale that mentions none of its path's
entities). Flagged rows are skipped (and counted) unless configured
otherwise; a row without a question, answer or rationale is rejected.

With ``questions`` (multiple-choice QA files, e.g. CommonsenseQA's training
part) every question of those files is a sample, and the rationale file only
adds a rationale to the questions it has a usable one for; the others train
on the answer alone (both views then read the same tokens, so their KL is
exactly 0). Plain SFT and KALE then see the same questions, and KALE differs
only where a rationale exists.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.errors import UserError
from kgscale.samples.rejects import SampleRejects

RATIONALES = "rationales.parquet"
REQUIRED = ("question_id", "question", "answer", "rationale")


class RationalesError(UserError, FileNotFoundError):
    """The rationales input is missing or lacks a column; the message says which."""


def rationales_file(path: str | Path) -> Path:
    p = Path(path)
    f = p / RATIONALES if p.is_dir() else p
    if not f.is_file():
        raise RationalesError(f"rationales not found: {f} (set data.rationales to the output directory of "
                              "`kgscale rationales`, which holds rationales.parquet)")
    return f


def format_choices(choices: list[str] | None) -> str:
    """``A. first\\nB. second\\n`` (empty without choices)."""
    if not choices:
        return ""
    return "".join(f"{chr(ord('A') + i)}. {c}\n" for i, c in enumerate(choices))


def kale_samples(path: str | Path | None, skip_flagged: bool = True, rejects: SampleRejects | None = None,
                 questions: list[Path] | None = None, part: str = "all") -> pa.Table:
    """Columns: ``question_id``, ``question`` (with its choices), ``rationale``
    (empty for a question trained without one), ``answer``."""
    if questions:
        return _question_samples(questions, part, path, skip_flagged, rejects)
    if path is None:
        raise RationalesError("KALE needs data.rationales (the output of `kgscale rationales`) or data.questions")
    f = rationales_file(path)
    table = pq.read_table(f)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise RationalesError(f"{f} lacks the column(s) {', '.join(missing)}; it needs {', '.join(REQUIRED)} "
                              "(and optionally choices, flagged)")
    rows = table.to_pylist()
    out: dict[str, list] = {"question_id": [], "question": [], "rationale": [], "answer": []}
    for i, row in enumerate(rows):
        qid = str(row["question_id"])
        reason = None
        if skip_flagged and row.get("flagged"):
            reason = "flagged rationale (mentions none of its path's entities)"
        else:
            for col in ("question", "answer", "rationale"):
                if not (row.get(col) or "").strip():
                    reason = f"empty {col}"
                    break
        if reason:
            if rejects is not None:
                rejects.add(str(f), i, reason, qid)
            continue
        out["question_id"].append(qid)
        out["question"].append(row["question"].strip() + "\n" + format_choices(row.get("choices")))
        out["rationale"].append(row["rationale"].strip())
        out["answer"].append(row["answer"].strip())
    return pa.table({k: pa.array(v, pa.string()) for k, v in out.items()})


def _question_samples(questions: list[Path], part: str, rationales: str | Path | None, skip_flagged: bool,
                      rejects: SampleRejects | None) -> pa.Table:
    from kgscale.eval.choices import read_mc_jsonl
    from kgscale.eval.qa import mc_files
    from kgscale.kg.rejects import RejectLog

    usable = {}
    if rationales is not None:
        good = kale_samples(rationales, skip_flagged, rejects)
        usable = dict(zip(good["question_id"].to_pylist(), good["rationale"].to_pylist()))
    out: dict[str, list] = {"question_id": [], "question": [], "rationale": [], "answer": []}
    for f in mc_files([Path(q) for q in questions]):
        bad = RejectLog()
        for q in read_mc_jsonl(f, bad, part=part):
            out["question_id"].append(q.id)
            out["question"].append(q.question + "\n" + format_choices(q.choices))
            out["rationale"].append(usable.get(q.id, ""))
            out["answer"].append(q.choices[q.answer])
        if rejects is not None:
            for r in bad.rows:  # a malformed line: counted, by its byte offset
                rejects.add(str(f), r["offset"], r["reason"])
    if not out["question_id"]:
        raise RationalesError(f"no questions in part {part!r} of {', '.join(map(str, questions))}")
    return pa.table({k: pa.array(v, pa.string()) for k, v in out.items()})
