"""Rejected questions: counted, written with where they came from and why.

Synthesis inputs are rows (a JSONL line, a Parquet row, a teacher call), not
byte ranges, so a reject names its source file and a row locator (``line
12``, ``question_id=...``) rather than a byte offset.
"""
from __future__ import annotations

from kgscale.kg.rejects import RejectedInputError, RowLog


class QuestionRejects(RowLog):
    def add(self, source: str, where: str, reason: str, raw: str = "") -> None:
        if self.strict:
            raise RejectedInputError(f"{source} ({where}): {reason}")
        # "teacher HTTP 500 after 3 attempts: ..." counts under "teacher HTTP 500 after 3 attempts"
        self._record({"source": source, "where": where, "reason": reason, "raw": raw})
