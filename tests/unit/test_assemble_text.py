"""The entity and relation tables' texts: for each key, each text column's
first non-empty value by (priority, file, offset), whatever order the rows
arrive in; and the used keys' texts, with or without text for other keys.
And the cut a read task makes of its rows for the steps after it."""
from __future__ import annotations

import random

import pyarrow as pa

from kgscale.kg.assemble import _first_text, _keep_used, split_block
from kgscale.kg.schema import RAW_SCHEMA, RawRows


def _rows(seed: int, n_keys: int = 60, n_rows: int = 400) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n_rows):
        out.append({"key": f"k{rnd.randrange(n_keys):03d}",
                    "name": rnd.choice([None, f"n{i}"]), "description": rnd.choice([None, None, f"d{i}"]),
                    "priority": rnd.randrange(3), "file": rnd.choice(["a.nt", "b.nt"]), "offset": rnd.randrange(1000)})
    return out


def _reference(rows: list[dict], columns: list[str]) -> dict:
    by_key: dict[str, list[dict]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    out = {}
    for key in sorted(by_key):
        ordered = sorted(by_key[key], key=lambda r: (r["priority"], r["file"], r["offset"]))
        out[key] = tuple(next((r[c] for r in ordered if r[c] is not None), None) for c in columns)
    return out


def test_first_text_per_column_in_priority_file_offset_order():
    for seed in range(5):
        rows = _rows(seed)
        table = pa.Table.from_pylist(rows)
        # arrival in several chunks, as the blocks' tables are concatenated
        table = pa.concat_tables([table.slice(0, 150), table.slice(150)])
        got, extra = _first_text(table, ["name", "description"])
        want = _reference(rows, ["name", "description"])
        assert got["key"].to_pylist() == list(want)  # sorted by key
        assert list(zip(got["name"].to_pylist(), got["description"].to_pylist())) == list(want.values())
        # duplicates: rows after their key's first that gave no text
        gave = 0
        for key in want:
            ordered = sorted((r for r in rows if r["key"] == key), key=lambda r: (r["priority"], r["file"], r["offset"]))
            firsts = {next((i for i, r in enumerate(ordered) if r[c] is not None), None) for c in ("name", "description")}
            gave += len(({0} | firsts) - {None})
        assert extra == len(rows) - gave


def test_a_name_row_and_a_description_row_are_no_duplicates():
    rows = [{"key": "e1", "name": "Paris", "description": None, "priority": 0, "file": "a", "offset": 0},
            {"key": "e1", "name": None, "description": "capital of France", "priority": 0, "file": "a", "offset": 1},
            {"key": "e1", "name": "Paris, France", "description": None, "priority": 0, "file": "b", "offset": 0}]
    got, duplicates = _first_text(pa.Table.from_pylist(rows), ["name", "description"])
    assert got.to_pylist() == [{"key": "e1", "name": "Paris", "description": "capital of France"}]
    assert duplicates == 1  # the second name only


def test_first_text_one_row_a_key_and_a_row_with_no_key():
    rows = [{"key": k, "name": f"name of {k}", "priority": 0, "file": "a", "offset": i}
            for i, k in enumerate(["c", "a", "b"])]
    rows.append({"key": None, "name": "nobody", "priority": 0, "file": "a", "offset": 9})
    got, extra = _first_text(pa.Table.from_pylist(rows), ["name"])
    assert got.to_pylist() == [{"key": "a", "name": "name of a"}, {"key": "b", "name": "name of b"},
                               {"key": "c", "name": "name of c"}]
    assert extra == 0


def test_keep_used_with_and_without_text_for_other_keys():
    texts = pa.table({"key": ["a", "b", "c"], "name": ["A", None, "C"]})
    fallback = lambda key: f"<{key}>"  # noqa: E731
    # exactly the used keys: the texts, the missing name from the key
    got, unused, missing = _keep_used(texts, pa.array(["c", "b", "a"]), ["name"], fallback)
    assert got.to_pylist() == [{"key": "a", "name": "A"}, {"key": "b", "name": "<b>"}, {"key": "c", "name": "C"}]
    assert (unused, missing) == (0, 1)
    # text for a key no triple uses (a label of a predicate): the used keys
    got, unused, missing = _keep_used(texts, pa.array(["c", "b"]), ["name"], fallback)
    assert got.to_pylist() == [{"key": "b", "name": "<b>"}, {"key": "c", "name": "C"}]
    assert (unused, missing) == (1, 1)
    # and a used key with no text row
    got, unused, missing = _keep_used(texts, pa.array(["c", "d"]), ["name"], fallback)
    assert got.to_pylist() == [{"key": "c", "name": "C"}, {"key": "d", "name": "<d>"}]
    assert (unused, missing) == (2, 1)


def test_a_read_tasks_rows_are_cut_into_triples_texts_and_keys():
    rows = RawRows()
    rows.triple("train", "a", "r", "b", "f.nt", 0)
    rows.entity("a", "A", "the a", "f.nt", 10)
    rows.triple("test", "b", "s", "a", "f.nt", 20)
    rows.relation("r", "is r of", "f.nt", 30)
    rows.reject("syntax error", "<a> <r", "f.nt", 40)
    rows.triple("train", "a", "r", "c", "f.nt", 50)
    rows.skipped("literal object", "r2", 3, "f.nt")
    block = rows.table().drop_columns(["count"])  # a column a source left out is nulls
    triples, text, keys = split_block(block, with_triple_keys=True)
    assert triples.column_names == ["split", "head", "relation", "tail", "file", "offset"]
    assert triples.to_pylist() == [
        {"split": "train", "head": "a", "relation": "r", "tail": "b", "file": "f.nt", "offset": 0},
        {"split": "test", "head": "b", "relation": "s", "tail": "a", "file": "f.nt", "offset": 20},
        {"split": "train", "head": "a", "relation": "r", "tail": "c", "file": "f.nt", "offset": 50}]
    # the file's name, a relation's key and a split once (dictionary-encoded), not once a triple
    assert all(pa.types.is_dictionary(triples.schema.field(c).type) for c in ("file", "relation", "split"))
    assert not pa.types.is_dictionary(triples.schema.field("head").type)
    assert triples["file"].chunk(0).dictionary.to_pylist() == ["f.nt"]
    assert sorted(triples["relation"].chunk(0).dictionary.to_pylist()) == ["r", "s"]
    assert text["entity"].to_pylist() == [{"key": "a", "name": "A", "description": "the a", "priority": 0,
                                           "file": "f.nt", "offset": 10}]
    assert text["relation"]["name"].to_pylist() == ["is r of"]
    assert text["reject"]["raw"].to_pylist() == ["<a> <r"] and text["reject"].schema == RAW_SCHEMA
    assert text["skipped"].to_pylist() == [{"reason": "literal object", "relation": "r2", "count": None}]
    assert sorted(keys[0].to_pylist()) == ["a", "b", "c"] and sorted(keys[1].to_pylist()) == ["r", "s"]
    assert split_block(block, with_triple_keys=False)[2] is None

    # an empty file's block may have no columns at all
    triples, text, keys = split_block(pa.table({}), with_triple_keys=True)
    assert triples.num_rows == 0 and all(t.num_rows == 0 for t in text.values())
    assert len(keys[0]) == 0 and len(keys[1]) == 0
