"""Rejected questions: counted, written with where they came from and why.

Synthesis inputs are rows (a JSONL line, a Parquet row, a teacher call), not
byte ranges, so a reject names its source file and a row locator (``line
12``, ``question_id=...``) rather than a byte offset.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

from kgscale.kg.rejects import RejectedInputError


class QuestionRejects:
    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.rows: list[dict] = []
        self.by_reason: collections.Counter[str] = collections.Counter()

    def add(self, source: str, where: str, reason: str, raw: str = "") -> None:
        if self.strict:
            raise RejectedInputError(f"{source} ({where}): {reason}")
        self.rows.append({"source": source, "where": where, "reason": reason, "raw": raw})
        # "teacher HTTP 500 after 3 attempts: ..." counts under "teacher HTTP 500 after 3 attempts"
        self.by_reason[reason.split(":", 1)[0]] += 1

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> dict:
        return {"total": len(self.rows), "by_reason": dict(sorted(self.by_reason.items()))}

    def write(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
