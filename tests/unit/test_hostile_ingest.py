"""Hostile RDF and TSV input, read by the plain read functions (no Ray):
each case is a counted reject at its file and offset with a stable reason,
never a traceback, a hang or a silently lost statement (issue 17)."""
from __future__ import annotations

import bz2
import gzip
import time

import pyarrow as pa
import pytest

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.formats import read_line_range, read_stream_file
from kgscale.kg.rdf.ntriples import parse_block
from kgscale.kg.rejects import RejectLog, RejectedInputError, _reason_class
from kgscale.kg.sources.benchmark import parse_benchmark_line
from kgscale.kg.sources.range_read import read_range
from kgscale.kg.lines import ByteRange
from kgscale.kg.sources.tsv_block import parse_tsv_chunk

EX = "http://ex.org/"
G = f"<{EX}s> <{EX}p> <{EX}o> .\n".encode()


def read(path, cfg: RdfConfig | None = None) -> list[dict]:
    path = str(path)
    reader = read_line_range if path.endswith((".nt", ".nq", ".nt.gz", ".nt.bz2")) else read_stream_file
    tables = list(reader(ByteRange(path, 0, -1), "train", cfg or RdfConfig()))
    return pa.concat_tables(tables).to_pylist() if tables else []


def kinds(rows, kind):
    return [r for r in rows if r["kind"] == kind]


# ---- N-Triples / N-Quads ------------------------------------------------------------------


def test_a_bare_cr_ends_a_line_and_cr_only_files_read_whole():
    inside = f'<{EX}a> <{EX}p> "x\\ty" .\r<{EX}b> <{EX}p> <{EX}o> .\n'.encode() + G
    table, rejects = parse_block(inside, 0, False)
    assert rejects == [] and sorted(table["s"].to_pylist()) == [EX + "a", EX + "b", EX + "s"]
    cr_only = G.replace(b"\n", b"\r") * 3 + f'<{EX}e> <{EX}p> "caf\\u00e9" .\r'.encode()
    table, rejects = parse_block(cr_only, 0, False)
    assert rejects == [] and table.num_rows == 4
    # each statement at its own line's offset, not its neighbour's
    assert sorted(table["offset"].to_pylist()) == [0, len(G), 2 * len(G), 3 * len(G)]


def test_a_fifth_nquads_term_is_that_lines_reject_and_the_next_line_is_kept():
    data = f"<{EX}s> <{EX}p> <{EX}o> <{EX}g> <{EX}x> .\n".encode() + G
    table, rejects = parse_block(data, 0, True)
    assert table.num_rows == 1 and table["offset"].to_pylist() == [data.index(G)]
    assert [(r[0], r[1].split(":")[0]) for r in rejects] == [(0, "syntax error")]


def test_a_token_over_the_line_limit_is_a_reject_not_a_memory_error():
    huge = f'<{EX}s> <{EX}p> "'.encode() + b"x" * (17 << 20) + b'" .\n'
    table, rejects = parse_block(huge + G, 100, False)
    assert table.num_rows == 1
    ((offset, reason, raw),) = rejects
    assert offset == 100 and reason.startswith("line too long: ") and len(raw) <= 200


def test_junk_lines_cost_linear_time():
    junk = b"".join(b"junk line %d\n" % i for i in range(100_000))
    start = time.perf_counter()
    table, rejects = parse_block(junk + G, 0, False)
    assert time.perf_counter() - start < 10  # 97 s before: a re-parse of the rest per bad line
    assert len(rejects) == 100_000 and table.num_rows == 1
    assert {_reason_class(r[1]) for r in rejects} == {"syntax error"}


@pytest.mark.parametrize("suffix", [".nt.gz", ".nt.bz2", ".ttl.gz", ".ttl.bz2"])
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_broken_compressed_file_is_a_reject_naming_it(tmp_path, suffix, damage):
    data = G * 2000
    packed = gzip.compress(data) if suffix.endswith(".gz") else bz2.compress(data)
    packed = packed[: len(packed) // 2] if damage == "truncated" else packed[:20] + b"\x00" * 40 + packed[60:]
    path = tmp_path / f"f{suffix}"
    path.write_bytes(packed)
    rows = read(path)
    (rej,) = kinds(rows, "reject")
    assert rej["file"] == str(path) and rej["reason"].startswith("corrupt compressed file: ")


def test_a_broken_compressed_tsv_is_a_reject(tmp_path):
    path = tmp_path / "train.txt.gz"
    path.write_bytes(gzip.compress(b"a\tr\tb\n" * 1000)[:-30])
    rows = [r for t in read_range(ByteRange(str(path), 0, -1), "train", parse_benchmark_line) for r in t.to_pylist()]
    (rej,) = kinds(rows, "reject")
    assert rej["reason"].startswith("corrupt compressed file: ") and rej["file"] == str(path)


# ---- byte-order marks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["f.nt", "f.ttl", "f.nt.gz"])
def test_a_utf8_bom_is_skipped(tmp_path, name):
    data = b"\xef\xbb\xbf" + G + f"<{EX}s> <{EX}p> <{EX}o2> .\n".encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    rows = read(path)
    assert kinds(rows, "reject") == [] and len(kinds(rows, "triple")) == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_a_bom_does_not_make_the_tsv_header_an_entity(tmp_path, chunked):
    path = tmp_path / "entities.tsv"
    path.write_bytes(b"\xef\xbb\xbfid\tname\tdescription\na\tAlpha\t\n")
    tables = read_range(ByteRange(str(path), 0, -1), "entities", parse_benchmark_line, parse_tsv_chunk if chunked else None)
    rows = [r for t in tables for r in t.to_pylist()]
    assert [(r["kind"], r["key"]) for r in rows] == [("entity", "a")]


# ---- streaming formats ------------------------------------------------------------------------


def test_deep_json_ld_is_refused_before_it_crashes_the_parser(tmp_path):
    # nested 5000 deep this killed the process (SIGSEGV in pyoxigraph)
    depth = 5000
    doc = '{"@id": "http://ex.org/s", "http://ex.org/p": ' + '{"http://ex.org/p": ' * depth + '"x"' + "}" * depth + "}"
    path = tmp_path / "deep.jsonld"
    path.write_text(doc)
    (rej,) = kinds(read(path), "reject")
    assert rej["reason"].startswith("nested too deep: more than 256 levels")
    assert 0 < rej["offset"] < len(doc)
    # brackets inside strings and escaped quotes do not count
    ok = tmp_path / "ok.jsonld"
    ok.write_text('{"@id": "http://ex.org/s", "http://ex.org/p": "' + "[{" * 300 + '\\" ]}"}')
    rows = read(ok)
    assert kinds(rows, "reject") == [] and rows


XML_HEAD = '<?xml version="1.0"?>\n'
RDF_OPEN = f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:e="{EX}">'


def test_rdf_xml_entity_expansion_is_bounded(tmp_path):
    # 860 bytes that expand to 30 MB: the billion-laughs shape
    dtd = '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(7)) + "]>"
    doc = XML_HEAD + dtd + RDF_OPEN + f'<rdf:Description rdf:about="{EX}s"><e:p>&h;</e:p></rdf:Description></rdf:RDF>'
    path = tmp_path / "laughs.rdf"
    path.write_text(doc)
    rows = read(path)
    (rej,) = kinds(rows, "reject")
    assert rej["reason"].startswith("entity expansion too large: ") and kinds(rows, "triple") == []
    # many references to one modest entity add up too
    many = XML_HEAD + '<!DOCTYPE r [<!ENTITY k "' + "k" * 60_000 + '">]>' + RDF_OPEN + \
        f'<rdf:Description rdf:about="{EX}s"><e:p>' + "&k;" * 300 + "</e:p></rdf:Description></rdf:RDF>"
    path.write_text(many)
    (rej,) = kinds(read(path), "reject")
    assert rej["reason"].startswith("entity expansion too large: ")


def test_rdf_xml_external_entities_and_deep_nesting_are_refused(tmp_path):
    ext = XML_HEAD + '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + RDF_OPEN + \
        f'<rdf:Description rdf:about="{EX}s"><e:p>&x;</e:p></rdf:Description></rdf:RDF>'
    path = tmp_path / "ext.rdf"
    path.write_text(ext)
    (rej,) = kinds(read(path), "reject")
    assert rej["reason"].startswith("external entity refused: x")
    n = 3000
    deep = XML_HEAD + RDF_OPEN + f'<rdf:Description rdf:about="{EX}s">' + "<e:p><rdf:Description>" * n + \
        "<e:p>x</e:p>" + "</rdf:Description></e:p>" * n + "</rdf:Description></rdf:RDF>"
    path.write_text(deep)
    (rej,) = kinds(read(path), "reject")
    assert rej["reason"].startswith("nested too deep: more than 256 elements")
    # the ordinary shape, with the usual namespace entities, is unaffected
    owl = XML_HEAD + f'<!DOCTYPE r [<!ENTITY ex "{EX}">]>' + RDF_OPEN + \
        '<rdf:Description rdf:about="&ex;s"><e:p rdf:resource="&ex;o"/></rdf:Description></rdf:RDF>'
    path.write_text(owl)
    rows = read(path)
    assert kinds(rows, "reject") == [] and [(r["head"], r["tail"]) for r in kinds(rows, "triple")] == [(EX + "s", EX + "o")]


def test_trix_is_read(tmp_path):
    path = tmp_path / "g.trix"
    path.write_text(
        '<TriX xmlns="http://www.w3.org/2004/03/trix/trix-1/"><graph><uri>http://ex.org/g</uri>'
        f"<triple><uri>{EX}s</uri><uri>{EX}p</uri><uri>{EX}o</uri></triple>"
        f'<triple><uri>{EX}s</uri><uri>http://www.w3.org/2000/01/rdf-schema#label</uri><plainLiteral xml:lang="en">S</plainLiteral></triple>'
        "</graph></TriX>")
    rows = read(path)
    assert kinds(rows, "reject") == []
    assert [(r["head"], r["tail"]) for r in kinds(rows, "triple")] == [(EX + "s", EX + "o")]
    assert [(r["key"], r["name"]) for r in kinds(rows, "entity")] == [(EX + "s", "S")]


def test_stream_reasons_carry_no_line_number_and_many_errors_stay_linear(tmp_path):
    path = tmp_path / "many.ttl"
    lines = [f"<{EX}s{i}> <{EX}p> <{EX}o> <{EX}oops> ." for i in range(800)]
    path.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    rej = kinds(read(path), "reject")
    assert time.perf_counter() - start < 10
    assert len(rej) >= 400 and len({_reason_class(r["reason"]) for r in rej}) == 1
    offsets = [r["offset"] for r in rej]
    assert offsets == sorted(offsets) and all(r["raw"].startswith(f"<{EX}s") for r in rej)


# ---- the reject log ---------------------------------------------------------------------------


def test_a_huge_key_gives_a_small_reject_and_a_short_strict_message(tmp_path):
    key = "k" * (10 << 20)
    log = RejectLog()
    log.add("f.tsv", 0, f"entity has no text: {key}", key)
    out = tmp_path / "rejects.jsonl"
    log.write(out)
    assert out.stat().st_size < 4096
    with pytest.raises(RejectedInputError) as err:
        RejectLog(strict=True).add("f.tsv", 0, f"entity has no text: {key}", key)
    assert len(str(err.value)) < 1024


def test_turtle_resumes_after_an_unterminated_string(tmp_path):
    # pyoxigraph read the open string on to the end of the file: everything after it was lost
    path = tmp_path / "open.ttl"
    path.write_text(f'@prefix ex: <{EX}> .\nex:a ex:p "unterminated .\nex:b ex:p ex:c .\nex:d ex:p "still open\n'
                    f"ex:e ex:p ex:f .\n")
    rows = read(path)
    assert {(r["head"], r["tail"]) for r in kinds(rows, "triple")} == {(EX + "b", EX + "c"), (EX + "e", EX + "f")}
    rej = kinds(rows, "reject")
    text = path.read_bytes()
    assert [r["offset"] for r in rej] == [text.index(b"ex:a"), text.index(b"ex:d")]
    assert all(r["reason"].startswith("syntax error: ") for r in rej)
