"""Rejected input: counted, written with its location and reason, never lost.

Read tasks record a rejected row as a raw row of kind ``reject`` (see
:mod:`kgscale.kg.schema`), so bad input never crashes a worker. The driver
collects them here; with ``strict`` the first one is fatal.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pyarrow as pa

from kgscale.errors import UserError


class RejectedInputError(UserError, ValueError):
    """Raised in strict mode for the first rejected row; names where and why."""


class RowLog:
    """Rows some stage could not use: each kept as a dict, counted by the
    reason's class (the text before its first colon). The subclasses say
    what locates a row: a byte offset in a file, a row in a table, a question."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.rows: list[dict] = []
        self.by_reason: collections.Counter[str] = collections.Counter()

    def _record(self, row: dict) -> None:
        self.rows.append(row)
        self.by_reason[_reason_class(row["reason"])] += 1

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> dict:
        return {"total": len(self.rows), "by_reason": dict(sorted(self.by_reason.items()))}

    def write(self, path: str | Path) -> None:
        """Every row as a JSON line."""
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


class RejectLog(RowLog):
    """Rejected input rows located by file and byte offset."""

    def add(self, file: str, offset: int, reason: str, raw: str = "") -> None:
        # a reason may quote a hostile key (a 10 MB IRI made a 20 MB rejects.jsonl
        # and a 10 MB --strict message): both are cut here, whatever the source
        reason, raw = _cut(reason, MAX_REASON_CHARS), _cut(raw, MAX_RAW_CHARS)
        row = {"file": file, "offset": int(offset), "line": None, "reason": reason, "raw": raw}
        if self.strict:
            _resolve_lines([row])
            where = f"{file}:{row['line']}" if row["line"] else f"{file} @ {offset}"
            raise RejectedInputError(f"{where}: {reason}")
        self._record(row)

    def add_table(self, table: pa.Table) -> None:
        for row in table.select(["file", "offset", "reason", "raw"]).to_pylist():
            self.add(row["file"], row["offset"], row["reason"], row["raw"] or "")

    def write(self, path: str | Path) -> None:
        """Every rejected row, with its line number resolved, in file order."""
        _resolve_lines(self.rows)
        self.rows.sort(key=lambda r: (r["file"], r["offset"]))
        super().write(path)


class TripleRejects(RowLog):
    """Triples of a split that a stage could not use (evaluation's test
    triples naming an entity without text): the split, the row in it, the
    triple's keys and the reason. With ``strict`` the first one raises
    ``error`` (the stage's own input error class)."""

    def __init__(self, strict: bool = False, error: type[Exception] = RejectedInputError) -> None:
        super().__init__(strict)
        self.error = error

    def add(self, split: str, row: int, head: str, relation: int | str, tail: str, reason: str) -> None:
        if self.strict:
            raise self.error(f"{split} row {row} ({head} {relation} {tail}): {reason}")
        self._record({"split": split, "row": int(row), "head": head, "relation": relation, "tail": tail,
                      "reason": reason})


MAX_REASON_CHARS = 500
MAX_RAW_CHARS = 500


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _reason_class(reason: str) -> str:
    # "wrong number of fields: 2 (expected 3)" counts under "wrong number of fields"
    return reason.split(":", 1)[0]


def _resolve_lines(rows: list[dict]) -> None:
    """Turn byte offsets into 1-based line numbers for rows from local files.

    Read tasks work on byte ranges and do not know absolute line numbers; a
    single counting pass over each file that has rejects recovers them.
    """
    by_file: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        if row["line"] is None and row["offset"] is not None and row["offset"] >= 0:
            by_file[row["file"]].append(row)
    for file, file_rows in by_file.items():
        path = Path(file)
        if not path.is_file() or path.suffix in (".gz", ".bz2"):
            continue
        file_rows.sort(key=lambda r: r["offset"])
        with open(path, "rb") as f:
            pos, lines = 0, 0
            for row in file_rows:
                lines += f.read(row["offset"] - pos).count(b"\n")
                pos = row["offset"]
                row["line"] = lines + 1
