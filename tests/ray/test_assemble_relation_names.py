"""Relation texts of a graph source (entities_from_triples): a key's name
names it in either role, so an IRI's rdfs:label (an entity text row) names
the relation it is used as. Only the named rows of keys used as relations
join the relation rows' sort (kgscale.kg.assemble): the texts are those of
sorting every named entity row in, as before, and the relations' duplicate
count no longer counts entities' duplicate names."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray

from kgscale.kg.assemble import _first_text, _keep_used, assemble, split_block
from kgscale.kg.keys import relation_text_from_key
from kgscale.kg.rejects import RejectLog
from kgscale.kg.schema import RAW_SCHEMA

EX = "http://example.org/"


def triple(h, r, t, split="train", off=0):
    return {"kind": "triple", "split": split, "head": EX + h, "relation": EX + r, "tail": EX + t, "file": "a.nt", "offset": off}


def text(kind, key, name, priority=0, file="a.nt", off=0, description=None):
    return {"kind": kind, "key": EX + key, "name": name, "description": description, "priority": priority,
            "file": file, "offset": off}


BLOCKS = [
    [triple("alice", "knows", "bob"), triple("alice", "birthPlace", "paris", off=1),
     triple("bob", "livesIn", "paris", "valid", off=2),
     # "knows" is also an entity: the head of a triple about the predicate
     triple("knows", "type", "Property", off=3),
     text("entity", "knows", "is acquainted with", off=4),
     text("entity", "alice", "Alice", off=5), text("entity", "bob", "Bob", off=6)],
    [# alice named twice (a second file): an entity duplicate, not a relation one
     text("entity", "alice", "Alice Liddell", file="b.nt", off=0),
     # livesIn: a relation text row and a label; the label's priority wins
     text("relation", "livesIn", "lives in (relation row)", priority=1, file="b.nt", off=1),
     text("entity", "livesIn", "resides in", priority=0, file="b.nt", off=2),
     # type: a description but no name -> the text from the key
     text("entity", "type", None, file="b.nt", off=3, description="the class of a thing"),
     text("entity", "paris", "Paris", file="b.nt", off=4)],
]


def rows() -> list[pa.Table]:
    return [pa.Table.from_pylist(b, schema=RAW_SCHEMA) for b in BLOCKS]


def copy_all_names(tables: list[pa.Table]) -> dict:
    """The relation texts as found before: every named entity row copied into
    the relation rows, all sorted, then the used relations kept."""
    t = pa.concat_tables(tables)
    ent = t.filter(pc.equal(t["kind"], "entity")).select(["key", "name", "priority", "file", "offset"])
    rel = t.filter(pc.equal(t["kind"], "relation")).select(["key", "name", "priority", "file", "offset"])
    named = ent.filter(pc.is_valid(ent["name"]))
    relations, _ = _first_text(pa.concat_tables([rel, named]), ["name"])
    trip = t.filter(pc.equal(t["kind"], "triple"))
    used = pc.unique(trip["relation"].combine_chunks())
    relations, _, _ = _keep_used(relations, used, ["name"], relation_text_from_key)
    return dict(zip(relations["key"].to_pylist(), relations["name"].to_pylist()))


@pytest.fixture(scope="module")
def assembled():
    return assemble([tuple(map(ray.put, split_block(t, True))) for t in rows()], RejectLog(), entities_from_triples=True)


def test_relation_texts_unchanged(assembled):
    got = dict(zip(assembled.relations["key"].to_pylist(), assembled.relations["text"].to_pylist()))
    assert got == copy_all_names(rows())
    assert got == {EX + "birthPlace": "birth place", EX + "knows": "is acquainted with",
                   EX + "livesIn": "resides in", EX + "type": "type"}
    assert assembled.relations["id"].to_pylist() == [0, 1, 2, 3]


def test_entities_keep_their_names_and_dupes_counted_per_role(assembled):
    ents = dict(zip(assembled.entities["key"].to_pylist(), assembled.entities["name"].to_pylist()))
    assert ents[EX + "knows"] == "is acquainted with"
    assert ents[EX + "alice"] == "Alice"  # a.nt before b.nt
    assert assembled.triples.num_rows == 4
    # entities: alice's second name; relations: livesIn's relation row beside
    # its label (alice's second name was counted here too before)
    assert assembled.stats["duplicate_text_rows"] == {"entities": 1, "relations": 1}
