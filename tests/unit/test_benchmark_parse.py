from kgscale.kg.rejects import RejectedInputError, RejectLog
from kgscale.kg.schema import RawRows
from kgscale.kg.sources.benchmark import parse_benchmark_line
from kgscale.kg.sources.lines import ByteRange
from kgscale.kg.sources.line_datasource import read_range

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
