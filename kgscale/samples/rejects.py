"""Rows a sample builder could not use: counted, kept with where and why."""
from __future__ import annotations

from kgscale.errors import UserError
from kgscale.kg.rejects import RowLog


class RejectedSampleError(UserError, ValueError):
    """Raised in strict mode for the first rejected row."""


class SampleRejects(RowLog):
    """Rejected input rows of a sample builder: ``source`` (file), ``row``
    (index in it), ``id`` (the row's own id) and ``reason``."""

    def add(self, source: str, row: int, reason: str, id: str | int | None = None) -> None:
        if self.strict:
            raise RejectedSampleError(f"{source} row {row} ({id}): {reason}")
        self._record({"source": source, "row": int(row), "id": id, "reason": reason})

    def extend(self, rows: list[dict]) -> None:
        for r in rows:
            self.add(r["source"], r["row"], r["reason"], r.get("id"))
