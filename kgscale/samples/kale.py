"""KALE training samples from a rationale stage's output.

The rationale stage (``kgscale rationales``) writes ``rationales.parquet``
with at least the string columns ``question_id``, ``question``, ``answer``
(the answer text), ``rationale``, plus ``choices`` (list of strings, may be
empty) and ``flagged`` (a rationale that mentions none of its path's
entities). Flagged rows are skipped (and counted) unless configured
otherwise; a row without a question, answer or rationale is rejected.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kgscale.samples.rejects import SampleRejects

RATIONALES = "rationales.parquet"
REQUIRED = ("question_id", "question", "answer", "rationale")


class RationalesError(FileNotFoundError):
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


def kale_samples(path: str | Path, skip_flagged: bool = True, rejects: SampleRejects | None = None) -> pa.Table:
    """Columns: ``question_id``, ``question`` (with its choices), ``rationale``,
    ``answer``."""
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
