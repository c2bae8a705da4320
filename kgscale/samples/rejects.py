"""Rows a sample builder could not use: counted, kept with where and why."""
from __future__ import annotations

import collections
import json
from pathlib import Path


class RejectedSampleError(ValueError):
    """Raised in strict mode for the first rejected row."""


class SampleRejects:
    """Rejected input rows of a sample builder: ``source`` (file), ``row``
    (index in it), ``id`` (the row's own id) and ``reason``."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.rows: list[dict] = []
        self.by_reason: collections.Counter[str] = collections.Counter()

    def add(self, source: str, row: int, reason: str, id: str | int | None = None) -> None:
        if self.strict:
            raise RejectedSampleError(f"{source} row {row} ({id}): {reason}")
        self.rows.append({"source": source, "row": int(row), "id": id, "reason": reason})
        self.by_reason[reason.split(":", 1)[0]] += 1

    def extend(self, rows: list[dict]) -> None:
        for r in rows:
            self.add(r["source"], r["row"], r["reason"], r.get("id"))

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> dict:
        return {"total": len(self.rows), "by_reason": dict(sorted(self.by_reason.items()))}

    def write(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
