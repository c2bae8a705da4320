"""FB15k-237 written as N-Triples (triples in train.nt / valid.nt / test.nt,
names and descriptions as literal triples in text.nt: 338,323 statements)
ingests to the benchmark's counts and names."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from kgscale.ingest import IngestConfig, run_ingest
from kgscale.kg.rdf.export import entity_iri, export_benchmark
from kgscale.ray_session import RayConfig

BASE = "http://example.org/kg/"


@pytest.mark.slow
def test_fb15k237_as_ntriples_matches_the_benchmark(tmp_path, shared_datasets):
    src = shared_datasets / "fb15k237"
    counts = export_benchmark(src, tmp_path / "rdf", base=BASE)
    assert sum(counts.values()) == 338_323
    m = run_ingest(
        IngestConfig(source=str(tmp_path / "rdf"), out=tmp_path / "snap", read_task_mb=16,
                     rdf={"splits": {"files": {"valid": ["valid.nt"], "test": ["test.nt"]}}}),
        RayConfig(progress_bars=False),
    )
    lines = {s: sum(1 for _ in open(src / f"{s}.txt")) for s in ("train", "valid", "test")}
    assert m["counts"]["triples"] == lines == {"train": 272_115, "valid": 17_535, "test": 20_466}
    assert m["counts"]["entities"] == 14_541 and m["counts"]["relations"] == 237
    assert m["rejected"]["total"] == 0 and m["graph_text"]["entities_named_from_key"] == 0
    expected = {}
    with open(src / "entities.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            key, name, desc = (x.strip() for x in line.rstrip("\n").split("\t"))
            expected[entity_iri(BASE, key)] = (name, desc or None)
    ents = pq.read_table(tmp_path / "snap" / "entities.parquet")
    got = dict(zip(ents["key"].to_pylist(), zip(ents["name"].to_pylist(), ents["description"].to_pylist())))
    assert got == expected
