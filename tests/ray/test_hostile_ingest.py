"""The hostile-input battery through the real ingest (its read tasks on Ray):
every case a counted reject at its file with a stable reason, no crash, no
hang, no valid statement lost; a read task that kills its worker is a
reject for its file after a bounded retry, not an ingest that never ends."""
from __future__ import annotations

import collections
import json
import time

import pyarrow.parquet as pq
import pytest
import ray

from kgscale.ingest import IngestConfig, run_ingest
from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.formats import read_rdf_range
from kgscale.kg.sources.line_datasource import RangeDatasource
from kgscale.kg.sources.ray_read import read_blocks
from kgscale.kg.lines import ByteRange
from kgscale.kg.rejects import RejectedInputError
from kgscale.ray_session import RayConfig
from tests.hostile_inputs import EX, _deep_jsonld, cases, good


def ingest(source, out, **kw) -> dict:
    return run_ingest(IngestConfig(source=str(source), out=out, **kw), RayConfig(progress_bars=False))


def test_the_battery_gives_counted_rejects_and_keeps_every_good_statement(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    battery = cases()
    for name, data, _, _ in battery:
        (src / name).write_bytes(data)
    start = time.perf_counter()
    m = ingest(src, tmp_path / "snap")
    elapsed = time.perf_counter() - start
    rejects = [json.loads(line) for line in (tmp_path / "snap" / "rejects.jsonl").open()]
    by_file = collections.Counter(r["file"].rsplit("/", 1)[-1] for r in rejects)
    want = {name: n for name, _, n, _ in battery}
    assert {k: v for k, v in by_file.items()} == {k: v for k, v in want.items() if v}
    assert m["rejected"]["total"] == sum(want.values()) == len(rejects)
    # reasons are classes, not one key per line: a handful for 20k+ rejects
    assert len(m["rejected"]["by_reason"]) < 15, m["rejected"]["by_reason"]
    assert all(len(r["reason"]) <= 600 and len(r["raw"]) <= 600 for r in rejects)
    ents = {e["key"]: e["id"] for e in pq.read_table(tmp_path / "snap" / "entities.parquet").to_pylist()}
    heads = {t["head"] for t in pq.read_table(tmp_path / "snap" / "triples.parquet").to_pylist()}
    goods = [g for _, _, _, gs in battery for g in gs]
    lost = [g for g in goods if ents.get(g.split()[0][1:-1]) not in heads]
    assert lost == []
    print(f"\nbattery: {len(battery)} inputs, {len(rejects)} rejects in {len(by_file)} files, "
          f"{len(goods)} good statements kept, 0 crashes, 0 hangs, {elapsed:.1f} s")
    assert elapsed < 120


def test_strict_names_the_first_bad_input(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.nt").write_text(good("a") + "\n")
    (src / "b.nt").write_bytes(f"<{EX}s> <{EX}p> <{EX}o> <{EX}g> <{EX}x> .\n".encode())
    with pytest.raises(RejectedInputError, match=r"b\.nt:1: syntax error: column"):
        ingest(src, tmp_path / "snap", strict=True)
    assert not (tmp_path / "snap").exists()


def _read_or_segfault(rng, role):
    """The RDF reader, except that a file named crash.nt kills its worker
    with a real SIGSEGV (what a parser's stack overflow does)."""
    if rng.path.endswith("crash.nt"):
        import ctypes

        ctypes.string_at(0)
    return read_rdf_range(rng, role, cfg=RdfConfig())


def test_a_task_that_kills_its_worker_is_a_reject_after_one_retry(tmp_path):
    (tmp_path / "crash.nt").write_text(good("crash") + "\n")
    (tmp_path / "fine.nt").write_text(good("fine") + "\n")
    plan = [(ByteRange(str(tmp_path / n), 0, -1), "train") for n in ("crash.nt", "fine.nt")]
    blocks, crashed = read_blocks(RangeDatasource(lambda _: plan, _read_or_segfault, 100))
    (rej,) = crashed.to_pylist()
    assert rej["file"].endswith("crash.nt") and rej["offset"] == 0 and rej["reason"].startswith("read task crashed: ")
    rows = [r for t in ray.get(blocks) for r in t.to_pylist()]
    assert [r["head"] for r in rows if r["kind"] == "triple"] == [f"{EX}good/fine/0"]


@pytest.mark.slow
def test_a_parser_crash_is_a_reject_for_its_file_after_a_bounded_retry(tmp_path):
    # with the depth guard lifted, pyoxigraph's JSON-LD parser overflows its
    # stack on this file and the read task's worker dies (SIGSEGV); before,
    # Ray Data retried the task forever
    src = tmp_path / "src"
    src.mkdir()
    (src / "deep.jsonld").write_text(_deep_jsonld(5000))
    (src / "fine.nt").write_text(good("fine") + "\n")
    start = time.perf_counter()
    m = ingest(src, tmp_path / "snap", rdf={"max_nesting_depth": 10**6})
    assert time.perf_counter() - start < 120
    (rej,) = [json.loads(line) for line in (tmp_path / "snap" / "rejects.jsonl").open()]
    assert rej["file"].endswith("deep.jsonld") and rej["reason"].startswith("read task crashed: ")
    assert m["counts"]["triples_total"] == 1


def test_a_hostile_benchmark_directory_adds_up(tmp_path):
    src = tmp_path / "bench"
    src.mkdir()
    good = [f"e{i}\tr\te{i + 1}" for i in range(20)]
    bad = [b"e1\tr", b"e1\t\te2", b"\t\t", b"e1\tr\te2\textra", b"e1\tr\t\xff\xfe", b"e1\x00\tr\te2",
           b"e1\tr\t" + b"k" * (10 << 20), b"e1\tr\tnobody", b"   "]
    lines = [g.encode() for g in good[:10]] + bad + [g.encode() for g in good[10:]] + [good[0].encode()]  # + a duplicate
    (src / "train.txt").write_bytes(b"\r\n".join(lines) + b"\r\n")  # CRLF
    (src / "valid.txt").write_bytes(b"")
    (src / "test.txt").write_bytes(b"e0\tr\te1\n")  # also in train: reported, kept
    ents = "".join(f"e{i}\tentity {i}\t\n" for i in range(21))
    (src / "entities.tsv").write_bytes(b"\xef\xbb\xbfid\tname\tdescription\n" + ents.encode())
    (src / "relations.tsv").write_bytes(b"\xef\xbb\xbfid\ttext\nr\trelated to\n")
    m = ingest(src, tmp_path / "snap")
    # every line is accounted for: kept, a duplicate, or a reject with its reason
    read = len(lines) + 1
    kept, dupes = m["counts"]["triples_total"], sum(m["duplicates"]["within_split"].values())
    assert kept + dupes + m["rejected"]["total"] == read
    assert (kept, dupes, m["rejected"]["total"]) == (21, 1, len(bad))
    assert m["counts"]["entities"] == 21  # the BOM'd header is no entity
    rejects = [json.loads(line) for line in (tmp_path / "snap" / "rejects.jsonl").open()]
    assert [r["line"] for r in rejects] == list(range(11, 11 + len(bad)))
    assert all(len(r["reason"]) <= 600 and len(r["raw"]) <= 600 for r in rejects)
