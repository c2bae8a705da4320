"""Raw rows from any source -> the snapshot's tables, with integer ids.

Ids do not depend on the source or on the order in which read tasks finish:
entity and relation ids are the ranks of their keys in sorted order, and
triples are sorted by (split, head, relation, tail). The same data therefore
gives the same snapshot whether it came from a file, a store or a server.

Each read task cuts the rows it parsed into triple rows, text rows and keys
(:func:`split_block`); the driver builds the entity and relation tables from
the text rows and keys, and encoding keys to ids runs in parallel, one Ray
task a block, against the key vocabularies, hashed once and placed in the
object store (:mod:`kgscale.kg.key_index`), so the driver only ever holds
integer triples, the texts and the rejects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from kgscale.kg import key_index
from kgscale.kg.key_index import KeyIndex
from kgscale.kg.keys import entity_name_from_key, relation_text_from_key
from kgscale.kg.rejects import RejectLog
from kgscale.kg.schema import (
    ENTITIES_SCHEMA,
    ENTITY,
    REJECT,
    RELATION,
    RAW_SCHEMA,
    RELATIONS_SCHEMA,
    SKIPPED,
    SPLITS,
    TRIPLE,
    TRIPLES_SCHEMA,
)
from kgscale.output import Timer

_ENCODED = pa.schema(
    [
        ("head", pa.int32()),
        ("relation", pa.int32()),
        ("tail", pa.int32()),
        ("split", pa.int8()),
        ("file", pa.string()),
        ("offset", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),
    ]
)


@dataclass
class Assembled:
    triples: pa.Table
    entities: pa.Table
    relations: pa.Table
    stats: dict = field(default_factory=dict)


# the columns the driver reads of each kind of text row
_TEXT_COLUMNS = {
    ENTITY: ["key", "name", "description", "priority", "file", "offset"],
    RELATION: ["key", "name", "priority", "file", "offset"],
    REJECT: RAW_SCHEMA.names,
    SKIPPED: ["reason", "relation", "count"],
}


# what the encode step reads of a triple row
_TRIPLE_COLUMNS = ["split", "head", "relation", "tail", "file", "offset"]
# ... and those of them that split_block dictionary-encodes
_FEW_VALUES = ["split", "relation", "file"]


def split_block(block: pa.Table, with_triple_keys: bool) -> tuple[pa.Table, dict[str, pa.Table], tuple | None]:
    """A block of raw rows cut into what the later steps read, run by each
    read task on the rows it has just parsed (``read_blocks(..., split=...)``),
    so that no step passes over the whole parsed rows again:

    - the triple rows, with only the columns the encode step reads;
    - one table a kind of text row (entity, relation, reject, skipped) with
      only the columns the driver reads, so it concatenates them without
      filtering them again;
    - when entities may come from triples alone, the block's distinct entity
      keys (heads and tails) and relation keys, else None.

    A pass of tasks over the parsed blocks used to do the last two: at 20M
    triples those blocks no longer fit Ray's default object store, and the
    pass read most of them back from disk.
    """
    if "kind" not in block.column_names:  # an empty block (empty file) may have no columns
        block = RAW_SCHEMA.empty_table()
    for f in RAW_SCHEMA:  # a column a source left out is a column of nulls
        if f.name not in block.column_names:
            block = block.append_column(f, pa.nulls(block.num_rows, f.type))
    text = {kind: block.select(cols).filter(pc.equal(block["kind"], kind)) for kind, cols in _TEXT_COLUMNS.items()}
    is_triple = pc.equal(block["kind"], TRIPLE)
    triples = block.select(_TRIPLE_COLUMNS)
    if not pc.all(is_triple, skip_nulls=False).as_py():  # a file of triples alone (most are) keeps its columns, uncopied
        triples = triples.filter(is_triple)
    keys = None
    if with_triple_keys:
        keys = (pc.unique(pa.concat_arrays([triples["head"].combine_chunks(), triples["tail"].combine_chunks()])),
                pc.unique(triples["relation"].combine_chunks()))
    # Columns of few distinct values, each value once, not once a row: a
    # task's triples come from one file or endpoint, and a graph has a few
    # hundred relations, whose keys are as long as an entity's. The triple
    # rows are most of what every read task puts in the object store, and
    # its writes there slow down when two workers write at once.
    for name in _FEW_VALUES:
        triples = triples.set_column(_TRIPLE_COLUMNS.index(name), name, pc.dictionary_encode(triples[name]))
    return triples, text, keys


def _first_text(rows: pa.Table, text_columns: list[str]) -> tuple[pa.Table, int]:
    """One row per key: for each text column, the first non-empty value by
    (priority, file, offset) among the key's rows (an RDF entity's name and
    description come as two rows).

    Returns the table sorted by key and the number of duplicate rows: rows
    after a key's first that gave it nothing (every text they had was given
    by an earlier row), so a name row and a description row of one key are
    no duplicate.

    Done on the sort's row order as integers: runs of equal keys, and per
    column the first valid row of each run, so the strings are compared once
    and each text column taken once (at 5M triples, 2.2M entity rows: 2.7 s
    against 4.4-5.5 s with a sorted copy of the rows and Arrow's group_by).
    """
    if rows.num_rows == 0:
        return pa.table({"key": pa.array([], pa.string()), **{c: pa.array([], pa.string()) for c in text_columns}}), 0
    if rows["key"].null_count:  # a text row for no key names nothing
        rows = rows.filter(pc.is_valid(rows["key"]))
    order = pc.sort_indices(rows, sort_keys=[("key", "ascending"), ("priority", "ascending"), ("file", "ascending"),
                                             ("offset", "ascending")])
    keys = pc.take(rows["key"], order).combine_chunks()
    n = len(keys)
    starts = np.ones(n, dtype=bool)  # where a run of equal keys starts
    if n > 1:
        starts[1:] = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    run = np.cumsum(starts) - 1  # each sorted row's key number
    n_keys = int(run[-1]) + 1
    order = order.to_numpy()
    cols = {"key": keys.filter(pa.array(starts))}
    gave = starts.copy()  # sorted rows that gave their key a text (or are its first row)
    for c in text_columns:
        valid = np.flatnonzero(pc.is_valid(rows[c]).to_numpy(zero_copy_only=False)[order])
        key_of = run[valid]
        first = np.ones(len(valid), dtype=bool)
        first[1:] = key_of[1:] != key_of[:-1]
        source = np.full(n_keys, -1, dtype=np.int64)  # the input row giving each key's text, -1 none
        source[key_of[first]] = order[valid[first]]
        gave[valid[first]] = True
        cols[c] = pc.take(rows[c], pa.array(source, mask=source < 0))
    return pa.table(cols), int(n - gave.sum())


_IDS = pa.schema([("head", pa.int32()), ("relation", pa.int32()), ("tail", pa.int32()), ("split", pa.int8())])


@ray.remote
def _warm_encode() -> None:
    """An encode task's fixed cost (numba's key hash loaded), run by a worker
    while the driver builds the entity and relation tables."""
    key_index.warm()


@ray.remote(num_returns=2)
def _encode_block(t: pa.Table, entities: KeyIndex, relations: KeyIndex) -> tuple[pa.Table, pa.Table]:
    """Map a block's triple rows (:func:`split_block`'s first part) to ids:
    (good triples as ids only, 13 bytes a triple; rejected triples with file,
    offset, reason and raw line).

    Only the rejected rows carry their location and text: the driver gathers
    every block's good triples, and a file name, an offset and the raw line
    for each of them (over 200 bytes a triple) was most of the ingest's
    memory at scale.
    """
    head = entities.lookup(t["head"])
    rel = _per_value(t["relation"], relations.lookup)
    tail = entities.lookup(t["tail"])
    split = _per_value(t["split"], lambda v: pc.index_in(v, value_set=pa.array(SPLITS)))
    ok = pc.and_(pc.and_(pc.is_valid(head), pc.is_valid(tail)), pc.and_(pc.is_valid(rel), pc.is_valid(split)))
    good = pa.Table.from_arrays(
        [head.filter(ok).cast(pa.int32()), rel.filter(ok).cast(pa.int32()), tail.filter(ok).cast(pa.int32()),
         split.filter(ok).cast(pa.int8())], schema=_IDS)
    if pc.all(ok).as_py() is not False:  # no rejects (or no triples)
        return good, _ENCODED.empty_table()
    bad = pc.invert(ok)
    t, head, rel, tail, split = (x.filter(bad) for x in (t, head, rel, tail, split))
    t = t.cast(pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in t.schema]))
    reason = pc.if_else(
        pc.is_null(head),
        pc.binary_join_element_wise("entity has no text: ", t["head"], ""),
        pc.if_else(
            pc.is_null(tail),
            pc.binary_join_element_wise("entity has no text: ", t["tail"], ""),
            pc.if_else(
                pc.is_null(rel),
                pc.binary_join_element_wise("relation has no text: ", t["relation"], ""),
                pc.binary_join_element_wise("unknown split: ", t["split"], ""),
            ),
        ),
    )
    raw = pc.binary_join_element_wise(t["head"], t["relation"], t["tail"], "\t")
    rejected = pa.Table.from_arrays(
        [
            pc.fill_null(head, -1).cast(pa.int32()),
            pc.fill_null(rel, -1).cast(pa.int32()),
            pc.fill_null(tail, -1).cast(pa.int32()),
            pc.fill_null(split, -1).cast(pa.int8()),
            t["file"],
            t["offset"],
            reason.cast(pa.string()),
            raw,
        ],
        schema=_ENCODED,
    )
    return good, rejected


def _per_value(column: pa.ChunkedArray, ids) -> pa.Array:
    """``ids(values)`` for each row of ``column``: for a dictionary-encoded
    column (:func:`split_block`), computed once a distinct value of each
    chunk and taken by the rows' indices."""
    if not pa.types.is_dictionary(column.type):
        return ids(column)
    chunks = [ids(c.dictionary).take(c.indices) for c in column.chunks]
    return pa.concat_arrays(chunks) if chunks else ids(pa.array([], column.type.value_type))


def _keep_used(texts: pa.Table, used: pa.Array, text_columns: list[str], fallback) -> tuple[pa.Table, int, int]:
    """One row per used key (sorted), with its text where a text row gave one
    and ``fallback(key)`` for a missing first text column. Returns the table,
    the number of text rows for keys no triple uses, and the number of
    fallbacks."""
    texts = texts.combine_chunks()
    found = pc.is_in(texts["key"], value_set=used)
    n_found = pc.sum(found).as_py() or 0  # used keys with text (text keys are unique)
    if n_found == len(used):
        # every used key has text (the usual case): the texts of used keys,
        # already sorted, without sorting the used keys and looking them up
        kept = texts.filter(found).combine_chunks()
        cols = {c: kept[c].combine_chunks() for c in ["key", *text_columns]}
    else:
        used = used.sort()
        idx = pc.index_in(used, value_set=texts["key"])
        cols = {"key": used}
        for c in text_columns:
            cols[c] = pc.take(texts[c].combine_chunks(), idx) if texts.num_rows else pa.nulls(len(used), pa.string())
    first = cols[text_columns[0]]
    missing = pc.is_null(first)
    n_missing = pc.sum(missing).as_py() or 0
    if n_missing:
        names = [fallback(k) for k in cols["key"].filter(missing).to_pylist()]
        cols[text_columns[0]] = pc.replace_with_mask(first, missing, pa.array(names, pa.string()))
    return pa.table(cols), texts.num_rows - n_found, n_missing


def _skipped_summary(rows: pa.Table, limit: int = 50) -> dict:
    """Counts of statements a source read but deliberately did not map, by
    reason and then key (the ``limit`` most frequent keys of each reason)."""
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by(["reason", "relation"], use_threads=False).aggregate([("count", "sum")])
    out: dict[str, dict] = {}
    for reason in sorted(set(grouped["reason"].to_pylist())):
        g = grouped.filter(pc.equal(grouped["reason"], reason)).sort_by([("count_sum", "descending"), ("relation", "ascending")])
        keys, counts = g["relation"].to_pylist(), g["count_sum"].to_pylist()
        out[reason] = {"total": int(sum(counts)), "by_key": dict(zip(keys[:limit], map(int, counts[:limit])))}
        if len(keys) > limit:
            out[reason]["other_keys"] = len(keys) - limit
    return out


def assemble(parts: list[tuple[ray.ObjectRef, ray.ObjectRef, ray.ObjectRef]], rejects: RejectLog, *,
             entities_from_triples: bool = False, timer: Timer | None = None) -> Assembled:
    """Build the snapshot tables from the blocks of raw rows a source was read
    into, each cut by :func:`split_block` (with ``entities_from_triples``)
    into three objects in the object store: ``parts`` holds their references,
    one tuple a block, as :func:`kgscale.kg.sources.ray_read.read_blocks`
    gives them with ``split=``.

    The driver gathers the text parts; the encode step is plain Ray tasks,
    one a block, so it runs in parallel where the blocks are.

    ``entities_from_triples`` is for graph sources (RDF, Neo4j), where the
    triples define the graph and text rows only name its nodes and edges:
    the entities are exactly the keys used as head or tail, the relations
    exactly the keys used as relation; text rows for other keys (a label of
    a node no triple uses) are counted and dropped; a key's name names it
    in either role (a predicate's rdfs:label is its relation text); an
    entity without a name is named after its key's local name and a
    relation without text gets its key's local name split into words
    (:mod:`kgscale.kg.keys`). Otherwise (benchmark directories) the text
    files define the entities and relations and a triple naming an unknown
    key is rejected.

    With a ``timer`` (the stage's), its steps are timed as ``text`` (the
    entity and relation tables), ``encode`` (keys to ids) and ``dedup``.
    """
    timer = timer or Timer()
    with timer("text"):
        entities, relations, entity_dupes, relation_dupes, skipped, graph_stats = _tables(
            [p[1:] for p in parts], rejects, entities_from_triples)
    with timer("encode"):
        good = _encode([p[0] for p in parts], entities, relations, rejects)
    with timer("dedup"):
        triples, dup_stats = _dedup_sorted(good)
    del good
    entity_table = pa.Table.from_arrays(
        [pa.array(np.arange(entities.num_rows, dtype=np.int32)), entities["key"], entities["name"], entities["description"]],
        schema=ENTITIES_SCHEMA,
    )
    relation_table = pa.Table.from_arrays(
        [pa.array(np.arange(relations.num_rows, dtype=np.int32)), relations["key"], relations["name"]],
        schema=RELATIONS_SCHEMA,
    )
    used = np.zeros(entities.num_rows, dtype=bool)
    used[triples["head"].to_numpy()] = True
    used[triples["tail"].to_numpy()] = True
    stats = {
        "duplicates": dup_stats,
        "duplicate_text_rows": {"entities": entity_dupes, "relations": relation_dupes},
        "entities_without_triples": int((~used).sum()),
    }
    if entities_from_triples:
        stats["graph_text"] = graph_stats
    if skipped:
        stats["skipped"] = skipped
    return Assembled(triples, entity_table, relation_table, stats)


def _tables(text_parts: list, rejects: RejectLog, entities_from_triples: bool) -> tuple:
    """The entity and relation tables (key, first text) from the blocks' text
    rows and keys (:func:`split_block`'s second and third parts), see
    :func:`assemble`; text rows that are rejects go to ``rejects``."""
    # the workers are idle while the driver builds the tables: each loads the
    # key hash now, so that no worker's first encode task does (0.45 s) while
    # every other waits on it
    for _ in range(int(ray.cluster_resources().get("CPU", 1))):
        _warm_encode.remote()
    got = ray.get([ref for text_and_keys in text_parts for ref in text_and_keys])
    parts = list(zip(got[0::2], got[1::2]))  # (text tables by kind, keys or None) a block
    empty = RAW_SCHEMA.empty_table()
    text = {kind: pa.concat_tables([empty.select(cols), *(p[0][kind] for p in parts)], promote_options="permissive")
            for kind, cols in _TEXT_COLUMNS.items()}
    # in file order, so that --strict names the first bad input whichever task finished first
    rejects.add_table(text[REJECT].sort_by([("file", "ascending"), ("offset", "ascending")]))
    ent_rows, rel_rows = text[ENTITY], text[RELATION]
    entities, entity_dupes = _first_text(ent_rows, ["name", "description"])

    graph_stats = {}
    if entities_from_triples:
        used_entities, used_relations = (
            pc.unique(pa.chunked_array([p[1][role] for p in parts if p[1] is not None], pa.string()))
            for role in (0, 1))
        if ent_rows.num_rows:
            # a key's name is its name in either role: a predicate's rdfs:label
            # arrives as an entity text row and names the relation. Only the
            # rows of keys used as relations (a few hundred keys, where the
            # entity rows are millions) join the relation rows' sort.
            named = ent_rows.filter(pc.and_(pc.is_in(ent_rows["key"], value_set=used_relations),
                                            pc.is_valid(ent_rows["name"])))
            rel_rows = pa.concat_tables([rel_rows, named.select(rel_rows.column_names).cast(rel_rows.schema)])
    relations, relation_dupes = _first_text(rel_rows, ["name"])

    if entities_from_triples:
        entities, unused_entity_text, named_from_key = _keep_used(entities, used_entities, ["name", "description"], entity_name_from_key)
        relations, _, texts_from_key = _keep_used(relations, used_relations, ["name"], relation_text_from_key)
        graph_stats = {
            "entities_named_from_key": named_from_key,
            "relations_text_from_key": texts_from_key,
            "entity_text_for_keys_in_no_triple": unused_entity_text,
        }
    skipped = _skipped_summary(text[SKIPPED])
    return entities, relations, entity_dupes, relation_dupes, skipped, graph_stats


def _encode(blocks: list, entities: pa.Table, relations: pa.Table, rejects: RejectLog) -> pa.Table:
    """Every block's triples as ids, one task a block; triples naming an
    unknown key go to ``rejects``."""
    # each vocabulary hashed once here, not once an encode task (kgscale.kg.key_index)
    entity_ref = ray.put(KeyIndex(entities["key"]))
    relation_ref = ray.put(KeyIndex(relations["key"]))
    encoded = [_encode_block.remote(b, entity_ref, relation_ref) for b in blocks]
    bad = [x for x in ray.get([e[1] for e in encoded]) if x.num_rows]
    if bad:
        rejects.add_table(pa.concat_tables(bad))
    good = pa.concat_tables([x for x in ray.get([e[0] for e in encoded]) if x.num_rows] or [_IDS.empty_table()])
    del encoded
    return good


def _dedup_sorted(good: pa.Table) -> tuple[pa.Table, dict]:
    """Drop exact duplicate triples within a split (counted) and sort the rest
    by (split, head, relation, tail).

    One int64 key a triple, sorted in place and decoded back: about 30 bytes
    a triple at the peak, where four int64 columns, their lexsort order and
    their reordered copies took over 100 (2 GB at 20M triples).
    """
    n = good.num_rows
    cols = {c: good[c].to_numpy() for c in ("split", "head", "relation", "tail")} if n else \
        {c: np.zeros(0, np.int64) for c in ("split", "head", "relation", "tail")}
    n_ent = int(max(cols["head"].max(initial=0), cols["tail"].max(initial=0))) + 1
    n_rel = int(cols["relation"].max(initial=0)) + 1
    per_split = n_ent * n_rel * n_ent
    if len(SPLITS) * per_split >= 1 << 63:
        raise ValueError(f"{n_ent:,} entities and {n_rel:,} relations: a triple does not fit a 64-bit key")
    key = cols["split"].astype(np.int64)
    key *= n_ent
    key += cols["head"]
    key *= n_rel
    key += cols["relation"]
    key *= n_ent
    key += cols["tail"]
    del cols
    key.sort()
    keep = np.ones(n, dtype=bool)
    if n:
        keep[1:] = key[1:] != key[:-1]
    split = (key // per_split).astype(np.int8)
    dupes = {s: int(((split == i) & ~keep).sum()) for i, s in enumerate(SPLITS)}
    key, split = key[keep], split[keep]
    del keep
    # triples of valid/test that also appear in train: leakage worth reporting
    # (train's keys are the sorted front of `key`)
    triple = key % per_split
    bounds = np.searchsorted(split, np.arange(len(SPLITS) + 1))
    train = triple[: bounds[1]]
    overlap = {}
    for i, s in enumerate(SPLITS[1:], start=1):
        part = triple[bounds[i]: bounds[i + 1]]
        pos = np.minimum(np.searchsorted(train, part), max(len(train) - 1, 0))
        overlap[s] = int((train[pos] == part).sum()) if len(train) else 0
    tail = (triple % n_ent).astype(np.int32)
    triple //= n_ent
    rel = (triple % n_rel).astype(np.int32)
    head = (triple // n_rel).astype(np.int32)
    del triple, key
    table = pa.Table.from_arrays(
        [pa.array(head), pa.array(rel), pa.array(tail),
         pa.DictionaryArray.from_arrays(pa.array(split), pa.array(SPLITS)).cast(pa.string())],
        schema=TRIPLES_SCHEMA,
    )
    return table, {"within_split": dupes, "also_in_train": overlap}
