"""The synthetic KG generator: reproducible bytes, and the shape of a real graph."""
import gzip
import hashlib

import numpy as np
import pytest

from kgscale.kg.synthetic import SyntheticKGConfig, generate_triples, write_synthetic_kg

DATA_FILES = ("train.txt", "valid.txt", "test.txt", "entities.tsv", "relations.tsv",
              "nt/train.nt", "nt/valid.nt", "nt/test.nt", "nt/text.nt",
              "nt_gz/train.nt.gz", "nt_gz/valid.nt.gz", "nt_gz/test.nt.gz", "nt_gz/text.nt.gz")


def _digests(root):
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in DATA_FILES}


def test_same_seed_same_bytes_other_seed_other_graph(tmp_path):
    cfg = SyntheticKGConfig(triples=20_000, seed=7)
    write_synthetic_kg(cfg, tmp_path / "a")
    write_synthetic_kg(cfg, tmp_path / "b")
    write_synthetic_kg(SyntheticKGConfig(triples=20_000, seed=8), tmp_path / "c")
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    assert a["train.txt"] != c["train.txt"] and a["entities.tsv"] != c["entities.tsv"]
    # gzipped and plain N-Triples hold the same statements
    for name in ("train.nt", "text.nt"):
        assert gzip.decompress((tmp_path / "a" / "nt_gz" / f"{name}.gz").read_bytes()) == \
            (tmp_path / "a" / "nt" / name).read_bytes()


@pytest.fixture(scope="module")
def graph():
    cfg = SyntheticKGConfig(triples=200_000, relations=300, seed=1)
    return cfg, generate_triples(cfg)


def test_counts_distinct_no_loops(graph):
    cfg, (h, r, t, split) = graph
    assert len(h) == cfg.triples
    keys = (h.astype(np.int64) * cfg.relations + r) * cfg.num_entities + t
    assert len(np.unique(keys)) == cfg.triples
    assert not (h == t).any()
    assert h.min() >= 0 and max(h.max(), t.max()) < cfg.num_entities and r.max() < cfg.relations


def test_degrees_heavy_tailed_and_no_entity_isolated(graph):
    cfg, (h, r, t, split) = graph
    deg = np.bincount(np.concatenate([h, t]), minlength=cfg.num_entities)
    assert deg.min() >= 1
    top = np.sort(deg)[::-1]
    # hubs: the top 1% of entities hold over a fifth of the triple ends, the
    # largest degree is hundreds of times the median
    assert top[: cfg.num_entities // 100].sum() > 0.2 * deg.sum()
    assert top[0] > 200 * np.median(deg)


def test_relation_frequencies_skewed(graph):
    cfg, (h, r, t, split) = graph
    freq = np.sort(np.bincount(r, minlength=cfg.relations))[::-1]
    assert (freq > 0).sum() > 250  # a few hundred relations are in use
    assert freq[0] > 0.1 * len(r) and freq[0] > 50 * np.median(freq)


def test_splits_disjoint_and_held_out_entities_seen_in_train(graph):
    cfg, (h, r, t, split) = graph
    counts = np.bincount(split, minlength=3)
    assert counts[1] > 0.008 * cfg.triples and counts[2] > 0.008 * cfg.triples
    train = split == 0
    seen = np.zeros(cfg.num_entities, bool)
    seen[h[train]] = seen[t[train]] = True
    held = ~train
    assert seen[h[held]].all() and seen[t[held]].all()
    assert np.isin(r[held], r[train]).all()
    # disjoint: each triple has one split value and no triple occurs twice (test above)


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="entities must lie"):
        generate_triples(SyntheticKGConfig(triples=100, entities=200))
    with pytest.raises(ValueError, match="relations must lie"):
        generate_triples(SyntheticKGConfig(triples=100, relations=10_000))


def test_cli_writes_the_formats_asked_for(tmp_path, capsys):
    from kgscale.cli import main

    assert main(["synth-kg", "--triples", "2000", "--out", str(tmp_path / "kg"), "--formats", "benchmark,nt"]) == 0
    assert "2,000" not in capsys.readouterr().err
    assert (tmp_path / "kg" / "train.txt").is_file() and (tmp_path / "kg" / "nt" / "text.nt").is_file()
    assert not (tmp_path / "kg" / "nt_gz").exists()
    lines = sum(len((tmp_path / "kg" / f"{s}.txt").read_text().splitlines()) for s in ("train", "valid", "test"))
    assert lines == 2000
    assert main(["synth-kg", "--triples", "2000", "--out", str(tmp_path / "x"), "--formats", "csv"]) == 2
    assert "unknown format" in capsys.readouterr().err
