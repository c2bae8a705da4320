"""A benchmark directory written as RDF, for testing and benchmarking RDF
ingestion against the benchmark's own reading of the same data.

Entities become ``<base>entity/<key>`` and relations ``<base>relation/<key>``
(keys percent-encoded); names are ``rdfs:label`` and descriptions
``schema:description`` literals tagged ``@en``. Two layouts say which split a
triple belongs to:

- ``files``: ``train.nt``, ``valid.nt``, ``test.nt`` and ``text.nt``, read
  with ``rdf.splits.files: {valid: [valid.nt], test: [test.nt]}``;
- ``quads``: one ``kg.nq`` with each split's triples in the named graph
  ``<base>graph/<split>`` (texts in the default graph), read with
  ``rdf.splits.graphs: {valid: [<base>graph/valid], test: [<base>graph/test]}``.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from kgscale.kg.rdf.config import RDFS, SCHEMA
from kgscale.kg.schema import SPLITS

LABEL = RDFS + "label"
DESCRIPTION = SCHEMA[0] + "description"


def _literal(text: str) -> str:
    esc = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{esc}"@en'


def entity_iri(base: str, key: str) -> str:
    return f"{base}entity/{quote(key.lstrip('/'), safe='/')}"


def relation_iri(base: str, key: str) -> str:
    return f"{base}relation/{quote(key.lstrip('/'), safe='/')}"


def _rows(path: Path, n: int):
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            fields = [x.strip() for x in line.rstrip("\n").split("\t")]
            if i == 0 and fields[0].lower() == "id":
                continue
            if len(fields) >= n and fields[0]:
                yield fields


def export_benchmark(src: str | Path, out: str | Path, *, base: str = "http://example.org/kg/", layout: str = "files",
                     relation_labels: bool = False) -> dict[str, int]:
    """Write ``src`` (benchmark layout) as RDF under ``out``; returns line counts per file."""
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    quads = layout == "quads"
    if layout not in ("files", "quads"):
        raise ValueError(f"layout must be files or quads, not {layout!r}")
    single = open(out / "kg.nq", "w", encoding="utf-8") if quads else None
    try:
        for split in SPLITS:
            f = single or open(out / f"{split}.nt", "w", encoding="utf-8")
            graph = f" <{base}graph/{split}>" if quads else ""
            n = 0
            for h, r, t in _rows(src / f"{split}.txt", 3):
                f.write(f"<{entity_iri(base, h)}> <{relation_iri(base, r)}> <{entity_iri(base, t)}>{graph} .\n")
                n += 1
            counts[f"{split} triples"] = n
            if not quads:
                f.close()
        f = single or open(out / "text.nt", "w", encoding="utf-8")
        n = 0
        for key, name, desc in _rows(src / "entities.tsv", 3):
            if name:
                f.write(f"<{entity_iri(base, key)}> <{LABEL}> {_literal(name)} .\n")
                n += 1
            if desc:
                f.write(f"<{entity_iri(base, key)}> <{DESCRIPTION}> {_literal(desc)} .\n")
                n += 1
        if relation_labels:
            for key, text in _rows(src / "relations.tsv", 2):
                if text:
                    f.write(f"<{relation_iri(base, key)}> <{LABEL}> {_literal(text)} .\n")
                    n += 1
        counts["text statements"] = n
        if not quads:
            f.close()
    finally:
        if single:
            single.close()
    return counts
