"""The N-Triples / N-Quads block parser: the fast path agrees with
pyoxigraph, bad lines become rejects at their offsets, ranges cover a file."""
from __future__ import annotations

import gzip

import pyoxigraph as ox
import pytest

from kgscale.kg.rdf.ntriples import parse_block
from kgscale.kg.rdf.terms import QuadColumns
from kgscale.kg.lines import ByteRange, iter_chunks, plan_ranges

GOOD = [
    '<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> .',
    '<http://ex.org/a> <http://ex.org/p> "plain" .',
    '<http://ex.org/a> <http://ex.org/p> "with spaces and <angle> #hash"@EN-gb .',
    '<http://ex.org/a> <http://ex.org/p> "42"^^<http://www.w3.org/2001/XMLSchema#integer> .',
    '<http://ex.org/a> <http://ex.org/p> "s"^^<http://www.w3.org/2001/XMLSchema#string> .',
    '_:b1 <http://ex.org/p> _:b2 .',
    '<http://ex.org/caf\u00e9> <http://ex.org/p> "na\u00efve \u2603" .',
    '<http://ex.org/a> <http://ex.org/p> "esc \\"q\\" \\\\ \\n \\u00e9" .',  # escapes: slow path
    '<http://ex.org/\\u00e9> <http://ex.org/p> <http://ex.org/b> .',  # escaped IRI: slow path
    '  <http://ex.org/a>\t<http://ex.org/p>   <http://ex.org/b>   .   # trailing comment',
    '<http://ex.org/a> <http://ex.org/p> "" .',
    '<urn:isbn:0451450523> <http://ex.org/p> <mailto:a@b.org> .',
]


def reference(lines: list[str], fmt) -> list[tuple]:
    cols = QuadColumns()
    for q in ox.parse("\n".join(lines), fmt):
        cols.add_terms(q.subject, q.predicate, q.object, q.graph_name, 0)
    t = cols.table().drop(["offset"])
    return sorted((tuple(map(str, r.values())) for r in t.to_pylist()))


def ours(lines: list[str], quads: bool = False):
    data = ("\n".join(lines) + "\n").encode()
    table, rejects = parse_block(data, 0, quads)
    return sorted(tuple(map(str, r.values())) for r in table.drop(["offset"]).to_pylist()), rejects


def test_fast_path_and_slow_path_agree_with_pyoxigraph():
    got, rejects = ours(GOOD)
    assert rejects == []
    assert got == reference(GOOD, ox.RdfFormat.N_TRIPLES)
    assert len(got) == len(GOOD)


def test_a_block_of_only_comments_and_blank_lines_is_empty_not_an_error():
    table, rejects = parse_block(b"# a comment\n\n   \n# another\n", 0, False)
    assert table.num_rows == 0 and rejects == []


def test_nquads_graph_terms():
    lines = [line.rstrip(" .").rstrip() + " <http://ex.org/g1> ." for line in GOOD[:7]] + GOOD[:2] + [
        '<http://ex.org/a> <http://ex.org/p> "x y"@en _:g2 .']
    got, rejects = ours(lines, quads=True)
    assert rejects == []
    assert got == reference(lines, ox.RdfFormat.N_QUADS)
    assert sum(1 for r in got if r[-1] == "http://ex.org/g1") == 7


def test_offsets_are_byte_offsets_of_lines():
    lines = ['<http://ex.org/a> <http://ex.org/p> "caf\u00e9" .', "", "# comment", '<http://ex.org/b> <http://ex.org/p> <http://ex.org/c> .']
    data = ("\n".join(lines) + "\n").encode()
    table, rejects = parse_block(data, 1000, False)
    starts = [1000 + data.index(line.encode()) for line in (lines[0], lines[3])]
    assert sorted(table["offset"].to_pylist()) == starts
    assert rejects == []


@pytest.mark.parametrize(
    "line, reason",
    [
        ('<http://ex.org/a> <http://ex.org/p> "unterminated .', "syntax error: column 37"),
        ("<not an iri> <http://ex.org/p> <http://ex.org/b> .", "Invalid IRI code point"),
        ("<relative> <http://ex.org/p> <http://ex.org/b> .", "No scheme found"),
        ("<http://a:b:c/> <http://ex.org/p> <http://ex.org/b> .", "Invalid character"),
        ('<http://ex.org/a> <http://ex.org/p> "bad \\q escape" .', "syntax error"),
        ('<http://ex.org/a> <http://ex.org/p> "x"@toolongsubtag .', "eight characters"),
        ("<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> <http://ex.org/g> .", "syntax error"),
    ],
)
def test_bad_lines_are_rejected_and_neighbours_kept(line, reason):
    before = "<http://ex.org/x> <http://ex.org/p> <http://ex.org/y> ."
    after = '<http://ex.org/z> <http://ex.org/p> "after" .'
    data = f"{before}\n{line}\n{after}\n".encode()
    table, rejects = parse_block(data, 0, False)
    assert sorted(table["s"].to_pylist()) == ["http://ex.org/x", "http://ex.org/z"]
    assert len(rejects) == 1
    offset, why, raw = rejects[0]
    assert offset == len(before) + 1
    assert reason in why and raw == line


def test_invalid_utf8_is_rejected_with_its_byte():
    data = b'<http://ex.org/a> <http://ex.org/p> "ok" .\n<http://ex.org/a> <http://ex.org/p> "\xff\xfe" .\n<http://ex.org/b> <http://ex.org/p> "ok" .\n'
    table, rejects = parse_block(data, 0, False)
    assert table.num_rows == 2
    assert [(r[0], r[1]) for r in rejects] == [(data.index(b"\n") + 1, "not valid UTF-8: byte 37")]


def test_crlf_line_endings():
    data = b"<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> .\r\n<http://ex.org/a> <http://ex.org/p> \"x\" .\r\n"
    table, rejects = parse_block(data, 0, False)
    assert rejects == [] and table.num_rows == 2 and table["o"].to_pylist() == ["http://ex.org/b", "x"]


@pytest.mark.parametrize("compress", [False, True])
def test_block_ranges_cover_every_line_once(tmp_path, compress):
    lines = [f"<http://ex.org/s{i}> <http://ex.org/p> \"{'x' * (i % 37)}\" ." for i in range(5000)]
    data = ("\n".join(lines)).encode()  # no final newline
    path = tmp_path / ("f.nt.gz" if compress else "f.nt")
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(data)
    seen = []
    for rng in plan_ranges([str(path)], 10_000):
        for offset, block in iter_chunks(rng, block=3000):
            assert data[offset : offset + len(block)] == block
            seen += block.decode().splitlines()
    assert seen == lines
    if not compress:
        assert len(plan_ranges([str(path)], 10_000)) > 10
