from kgscale.kg.rejects import RejectedInputError, RejectLog
from kgscale.kg.schema import RawRows
from kgscale.kg.sources.benchmark import parse_benchmark_line
from kgscale.kg.lines import ByteRange
from kgscale.kg.sources.range_read import read_range

import pytest


def _parse(role, *lines):
    rows = RawRows()
    off = 0
    for line in lines:
        parse_benchmark_line(rows, role, off, line, "f")
        off += len(line) + 1
    return rows.table().to_pylist()


def test_good_triple_and_entity_and_relation_rows():
    (t,) = _parse("train", "a\tr\tb")
    assert (t["kind"], t["split"], t["head"], t["relation"], t["tail"]) == ("triple", "train", "a", "r", "b")
    rows = _parse("entities", "id\tname\tdescription", "a\tAlpha\t", "b\t\tsecond letter")
    assert [(r["kind"], r["key"], r["name"], r["description"]) for r in rows] == [
        ("entity", "a", "Alpha", None),
        ("entity", "b", None, "second letter"),
    ]
    (r,) = _parse("relations", "id\ttext", "r\trelated to")
    assert (r["kind"], r["key"], r["name"]) == ("relation", "r", "related to")


def test_bad_rows_are_rejects_with_reason_and_offset():
    rows = _parse("valid", "a\tr", "a\t\tb", "", "a\tr\tb\tc")
    assert [r["kind"] for r in rows] == ["reject"] * 4
    assert rows[0]["reason"].startswith("wrong number of fields: 2")
    assert rows[1]["reason"] == "empty field: relation"
    assert rows[2]["reason"] == "empty line"
    assert rows[3]["reason"].startswith("wrong number of fields: 4")
    assert [r["offset"] for r in rows] == [0, 4, 9, 10]
    (e,) = _parse("entities", "x\t\t")
    assert e["reason"] == "entity has no text: x"


def test_non_utf8_bytes_are_rejected_not_fatal(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"a\tr\tb\nc\tr\t\xff\xfe\nd\tr\te\n")
    (table,) = list(read_range(ByteRange(str(path), 0, -1), "train", parse_benchmark_line))
    rows = table.to_pylist()
    assert [r["kind"] for r in rows] == ["triple", "reject", "triple"]
    assert rows[1]["reason"].startswith("not valid UTF-8") and rows[1]["offset"] == 6


def test_reject_log_resolves_lines_and_strict_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"ok\nok\nbad\n")
    log = RejectLog()
    log.add(str(path), 6, "empty field: head", "bad")
    log.write(tmp_path / "rejects.jsonl")
    assert '"line": 3' in (tmp_path / "rejects.jsonl").read_text()
    assert log.summary() == {"total": 1, "by_reason": {"empty field": 1}}
    with pytest.raises(RejectedInputError, match=r"train.txt:3: empty field: head"):
        RejectLog(strict=True).add(str(path), 6, "empty field: head", "bad")


MESSY = {
    "train": "a\tr\tb\n\nx\ty\n a \t r \t b \nc\t\td\r\ne\tr\tf\tg\n\t\t\nlast\tr\tno-newline",
    "entities": "id\tname\tdescription\na\tAlpha\tfirst\nb\t\t\n\tnameless\tkey\nc\tGamma\t\nd\t\tonly desc\nbad\n",
    "relations": "id\ttext\nr\trelated\ns\t\nt\ttoo\tmany\n",
}


@pytest.mark.parametrize("role", ["train", "entities", "relations"])
def test_chunk_parser_gives_the_same_rows_as_the_line_parser(tmp_path, role):
    from kgscale.kg.sources.tsv_block import parse_tsv_chunk

    path = tmp_path / f"{role}.txt"
    path.write_bytes(MESSY[role].encode())
    rng = ByteRange(str(path), 0, -1)
    key = lambda r: (r["offset"], r["kind"])
    by_line = sorted((r for t in read_range(rng, role, parse_benchmark_line) for r in t.to_pylist()), key=key)
    by_chunk = sorted((r for t in read_range(rng, role, parse_benchmark_line, parse_tsv_chunk) for r in t.to_pylist()),
                      key=key)
    assert by_chunk == by_line
    assert any(r["kind"] == "reject" for r in by_line) and any(r["kind"] != "reject" for r in by_line)


def test_chunk_with_bad_bytes_falls_back_to_lines_and_keeps_the_rest(tmp_path):
    from kgscale.kg.sources.tsv_block import parse_tsv_chunk

    path = tmp_path / "train.txt"
    path.write_bytes(b"a\tr\tb\nc\tr\t\xff\nd\tr\te\n")
    rows = [r for t in read_range(ByteRange(str(path), 0, -1), "train", parse_benchmark_line, parse_tsv_chunk)
            for r in t.to_pylist()]
    assert [r["kind"] for r in rows] == ["triple", "reject", "triple"]
