"""RDF files: a file, a directory (searched recursively) or a glob.

N-Triples and N-Quads files are cut into line-aligned byte ranges (a large
file is read by many tasks); other formats are read a file a task by a
streaming parser (see :mod:`kgscale.kg.rdf.formats`). The split of a file's
triples comes from ``rdf.splits.files`` (glob patterns on its name or path),
of a statement in a named graph from ``rdf.splits.graphs``; default train.
"""
from __future__ import annotations

import fnmatch
import functools
import glob
import os
from pathlib import Path

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.formats import format_of, read_rdf_range, split_compression
from kgscale.kg.sources.base import SourceError
from kgscale.kg.sources.line_datasource import RangeDatasource, target_range_bytes
from kgscale.kg.lines import ByteRange, plan_ranges

GLOB_CHARS = set("*?[")


def looks_like_rdf(source: str) -> bool:
    """A SOURCE string that names RDF files (by extension, directory content or glob)."""
    if any(c in source for c in GLOB_CHARS):
        return True
    p = Path(source)
    if p.is_dir():
        return any(format_of(str(f)) for f in p.rglob("*") if f.is_file())
    return format_of(source) is not None


def find_files(source: str) -> list[str]:
    """The RDF files a SOURCE names, sorted; errors name what was wrong."""
    if any(c in source for c in GLOB_CHARS):
        matches = sorted(m for m in glob.glob(source, recursive=True) if os.path.isfile(m))
        if not matches:
            raise SourceError(f"no files match {source}")
        unknown = [m for m in matches if format_of(m) is None]
        if unknown:
            raise SourceError(f"{source} matches files that are not RDF by their extension: {', '.join(unknown[:5])}")
        return [os.path.abspath(m) for m in matches]
    p = Path(source)
    if p.is_dir():
        files = sorted(str(f.resolve()) for f in p.rglob("*") if f.is_file() and format_of(str(f)))
        if not files:
            raise SourceError(f"{source} holds no RDF files (.nt, .nq, .ttl, .trig, .rdf, .owl, .jsonld, .n3, .trix, optionally .gz/.bz2)")
        return files
    if not p.exists():
        raise SourceError(f"source not found: {source}")
    if format_of(source) is None:
        raise SourceError(f"{source}: not an RDF file by its extension")
    return [str(p.resolve())]


def split_of_file(path: str, cfg: RdfConfig) -> str:
    name = os.path.basename(path)
    for split, patterns in cfg.splits.files.items():
        if any(fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(path, pat) for pat in patterns):
            return split
    return cfg.splits.default


class RdfFileSource:
    entities_from_triples = True

    def __init__(self, source: str, cfg: RdfConfig, target_bytes: int = 8 << 20) -> None:
        self.source = source
        self.cfg = cfg
        self.target_bytes = target_bytes
        self.files = find_files(source)
        self.splits = {f: split_of_file(f, cfg) for f in self.files}

    def input_files(self) -> list[str]:
        return list(self.files)

    def describe(self) -> dict:
        formats: dict[str, int] = {}
        for f in self.files:
            ext, comp = split_compression(f)
            formats[ext + (comp or "")] = formats.get(ext + (comp or ""), 0) + 1
        by_split: dict[str, int] = {}
        for s in self.splits.values():
            by_split[s] = by_split.get(s, 0) + 1
        return {"type": "rdf", "path": os.path.abspath(self.source) if not set(self.source) & GLOB_CHARS else self.source,
                "files": len(self.files), "formats": formats, "files_by_split": by_split}

    def _plan(self, parallelism: int) -> list[tuple[ByteRange, str]]:
        lines = [f for f in self.files if format_of(f) in ("nt", "nq")]
        total = sum(os.path.getsize(f) for f in lines)
        target = target_range_bytes(total, self.target_bytes)
        plan = [(r, self.splits[r.path]) for r in plan_ranges(lines, target)]
        plan += [(ByteRange(f, 0, -1), self.splits[f]) for f in self.files if f not in set(lines)]
        return plan

    def datasource(self) -> RangeDatasource:
        return RangeDatasource(self._plan, functools.partial(read_rdf_range, cfg=self.cfg), sum(os.path.getsize(f) for f in self.files))
