"""kgscale's ingest reads the synthetic KG: its benchmark directory and its
gzipped N-Triples give the same graph, with every count the generator wrote."""
import numpy as np

from kgscale.ingest import IngestConfig, run_ingest
from kgscale.kg.rdf.config import RdfConfig, RdfSplits
from kgscale.kg.snapshot import Snapshot
from kgscale.kg.synthetic import ENTITY_IRI, SyntheticKGConfig, write_synthetic_kg


def test_ingest_reads_benchmark_dir_and_ntriples_alike(tmp_path):
    info = write_synthetic_kg(SyntheticKGConfig(triples=30_000, relations=200, seed=3), tmp_path / "kg")
    m = run_ingest(IngestConfig(source=str(tmp_path / "kg"), out=tmp_path / "bench", read_task_mb=0.25))
    assert m["counts"]["triples"] == info["counts"]["triples"]
    assert m["counts"]["entities"] == info["counts"]["entities"]
    assert m["counts"]["relations"] == 200
    assert m["rejected"]["total"] == 0 and sum(m["duplicates"]["within_split"].values()) == 0
    rdf = RdfConfig(splits=RdfSplits(files={"valid": ["valid.nt*"], "test": ["test.nt*"]}))
    m2 = run_ingest(IngestConfig(source=str(tmp_path / "kg" / "nt_gz"), out=tmp_path / "nt", rdf=rdf))
    assert m2["counts"]["triples"] == info["counts"]["triples"]
    assert m2["rejected"]["total"] == 0

    a, b = Snapshot(tmp_path / "bench"), Snapshot(tmp_path / "nt")
    ea, eb = a.entities.to_pydict(), b.entities.to_pydict()
    assert [ENTITY_IRI + k for k in ea["key"]] == eb["key"]  # the same ranks: the same ids
    assert ea["name"] == eb["name"] and ea["description"] == eb["description"]
    assert all(ea["name"]) and all(ea["description"])
    assert b.relations.to_pydict()["text"] == a.relations.to_pydict()["text"]
    for split in ("train", "valid", "test"):
        ta, tb = a.triples(split), b.triples(split)
        for col in ("head", "tail"):
            assert np.array_equal(ta[col].to_numpy(), tb[col].to_numpy())
