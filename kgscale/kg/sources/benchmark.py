"""Benchmark directories: ``train.txt``, ``valid.txt``, ``test.txt`` (``head\\trelation\\ttail``),
``entities.tsv`` (``id\\tname\\tdescription``) and ``relations.tsv`` (``id\\ttext``),
the layout of WN18RR and FB15k-237 in ``../shared/datasets``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from kgscale.kg.schema import SPLITS, RawRows
from kgscale.kg.sources.base import SourceError
from kgscale.kg.lines import BOM
from kgscale.kg.sources.tsv_block import parse_tsv_chunk

if TYPE_CHECKING:  # imported where used: a read task's worker imports this module for its parser
    from kgscale.kg.sources.line_datasource import LineFileDatasource

TRIPLE_FILES = {split: f"{split}.txt" for split in SPLITS}
ENTITIES_FILE = "entities.tsv"
RELATIONS_FILE = "relations.tsv"
# First lines that are headers, not data.
HEADERS = {"entities": ("id", "name", "description"), "relations": ("id", "text")}


def parse_benchmark_line(rows: RawRows, role: str, offset: int, text: str, file: str) -> None:
    fields = text.split("\t")
    if not text.strip():
        rows.reject("empty line", text, file, offset)
        return
    if role in SPLITS:
        if len(fields) != 3:
            rows.reject(f"wrong number of fields: {len(fields)} (expected 3: head, relation, tail)", text, file, offset)
            return
        head, relation, tail = (f.strip() for f in fields)
        for name, value in (("head", head), ("relation", relation), ("tail", tail)):
            if not value:
                rows.reject(f"empty field: {name}", text, file, offset)
                return
        rows.triple(role, head, relation, tail, file, offset)
        return
    expected = HEADERS[role]
    # the first line (after a byte-order mark, which the reader steps over)
    if offset in (0, len(BOM)) and tuple(f.strip().lower() for f in fields) == expected:
        return  # header line
    if len(fields) != len(expected):
        rows.reject(
            f"wrong number of fields: {len(fields)} (expected {len(expected)}: {', '.join(expected)})", text, file, offset
        )
        return
    key = fields[0].strip()
    if not key:
        rows.reject("empty field: id", text, file, offset)
        return
    if role == "entities":
        name, description = fields[1].strip(), fields[2].strip()
        if not name and not description:
            rows.reject(f"entity has no text: {key}", text, file, offset)
            return
        rows.entity(key, name or None, description or None, file, offset)
    else:
        relation_text = fields[1].strip()
        if not relation_text:
            rows.reject(f"empty field: text", text, file, offset)
            return
        rows.relation(key, relation_text, file, offset)


class BenchmarkSource:
    """A benchmark directory read by line-aligned byte-range tasks."""

    def __init__(self, directory: str | Path, name: str | None = None, target_bytes: int = 8 << 20) -> None:
        self.directory = Path(directory).resolve()
        self.name = name
        self.target_bytes = target_bytes
        missing = [
            f for f in (*TRIPLE_FILES.values(), ENTITIES_FILE, RELATIONS_FILE) if not (self.directory / f).is_file()
        ]
        if missing:
            raise SourceError(f"{self.directory} is not a benchmark directory: missing {', '.join(missing)}")

    @staticmethod
    def looks_like(directory: Path) -> bool:
        return directory.is_dir() and all((directory / f).is_file() for f in TRIPLE_FILES.values())

    def files(self) -> list[tuple[str, str]]:
        files = [(str(self.directory / f), split) for split, f in TRIPLE_FILES.items()]
        files += [(str(self.directory / ENTITIES_FILE), "entities"), (str(self.directory / RELATIONS_FILE), "relations")]
        return files

    def input_files(self) -> list[str]:
        return [p for p, _ in self.files()]

    def describe(self) -> dict:
        d = {"type": "benchmark", "path": str(self.directory.resolve())}
        if self.name:
            d["dataset"] = self.name
        return d

    # Benchmarks name every entity in entities.tsv; a triple whose entity has
    # no text there is rejected.
    entities_from_triples = False

    def datasource(self) -> LineFileDatasource:
        # Ray Data stays out of the read tasks' workers (kgscale.kg.sources.ray_read)
        from kgscale.kg.sources.line_datasource import LineFileDatasource

        return LineFileDatasource(self.files(), parse_benchmark_line, self.target_bytes, parse_chunk=parse_tsv_chunk)
