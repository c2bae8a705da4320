"""RDF statements (:data:`~kgscale.kg.rdf.terms.QUADS_SCHEMA`) -> raw rows.

One vectorised function serves every RDF source, so a file, the embedded
store and a SPARQL endpoint give the same rows for the same statements:

- a statement whose object is an IRI or blank node is a triple; its
  predicate IRI is the relation key. The split comes from the statement's
  named graph (``rdf.splits.graphs``), else from its file, else the default;
- a literal on a name predicate (``rdf.name_predicates``) names its subject,
  on a description predicate describes it. Among several, the language
  preference (``rdf.languages``) decides first, the predicate's place in
  its list second. A predicate's own name (its ``rdfs:label``) becomes
  the relation's text (see :func:`kgscale.kg.assemble.assemble`);
- a predicate without a label gets its local name split into words as its
  text (``birthPlace`` -> ``birth place``; done in assemble);
- other literals are counted by predicate and skipped, unless their
  predicate is in ``rdf.keep_literal_predicates``;
- ``rdf:type`` statements are triples unless ``rdf.include_types`` is off;
- blank nodes are skolemised to ``urn:kgscale:bnode:<scope>:<label>``,
  ``scope`` naming the document (a file, a store, an endpoint), since blank
  node labels mean something only within one document.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.rdf.terms import RDF_TYPE, literal_key
from kgscale.kg.schema import ENTITY, RAW_SCHEMA, SKIPPED, TRIPLE, raw_table

BNODE_PREFIX = "urn:kgscale:bnode:"
# priority = language rank * LANG_STEP + predicate rank
LANG_STEP = 64

SKIP_LITERAL = "literal-valued predicate not in rdf.keep_literal_predicates"
SKIP_LANGUAGE = "name or description in a language not in rdf.languages"
SKIP_TYPE = "rdf:type statement (rdf.include_types is off)"


def skolemise(col: pa.Array, scope: str) -> pa.Array:
    if not pc.any(pc.starts_with(col, "_:")).as_py():
        return col
    return pc.replace_substring_regex(col, "^_:", f"{BNODE_PREFIX}{scope}:")


def language_ranks(langs: pa.Array, preference: list[str]) -> pa.Array:
    """Rank of each literal's language in ``preference`` (null: not wanted).
    Worked out once per distinct tag."""
    keys = pc.fill_null(langs, "")
    distinct = pc.unique(keys).to_pylist()
    ranks = [_rank(tag, preference) for tag in distinct]
    idx = pc.index_in(keys, value_set=pa.array(distinct, pa.string()))
    return pc.take(pa.array(ranks, pa.int32()), idx)


def _rank(tag: str, preference: list[str]) -> int | None:
    for i, want in enumerate(preference):
        if want == "*" or tag == want or (want and tag.startswith(want + "-")):
            if want == "*" and tag == "":
                continue
            return i
    return None


def _count_by(predicates: pa.Array, reason: str, file: str) -> pa.Table:
    if len(predicates) == 0:
        return RAW_SCHEMA.empty_table()
    vc = pc.value_counts(predicates)
    n = len(vc)
    return raw_table(n, kind=SKIPPED, reason=reason, relation=vc.field("values"), count=vc.field("counts"), file=file, offset=-1)


def quads_to_raw(q: pa.Table, cfg: RdfConfig, *, file: str, split: str, scope: str) -> pa.Table:
    """Map a block of statements to raw rows (:data:`RAW_SCHEMA`)."""
    if q.num_rows == 0:
        return RAW_SCHEMA.empty_table()
    q = q.combine_chunks()
    lit = q["literal"].combine_chunks()
    s = skolemise(q["s"].combine_chunks(), scope)
    p = q["p"].combine_chunks()
    o = q["o"].combine_chunks()
    offset = q["offset"].combine_chunks()
    out: list[pa.Table] = []

    names = pa.array(cfg.name_predicates, pa.string())
    descs = pa.array(cfg.description_predicates, pa.string())
    name_rank = pc.index_in(p, value_set=names)
    desc_rank = pc.index_in(p, value_set=descs)
    is_name = pc.and_(lit, pc.is_valid(name_rank))
    is_desc = pc.and_(pc.and_(lit, pc.is_valid(desc_rank)), pc.invert(is_name))
    is_text = pc.or_(is_name, is_desc)
    if pc.any(is_text).as_py():
        rank = language_ranks(q["lang"].combine_chunks(), cfg.languages)
        wanted = pc.is_valid(rank)
        priority = pc.add(pc.multiply(rank, LANG_STEP), pc.coalesce(name_rank, desc_rank))
        for mask, column in ((pc.and_(is_name, wanted), "name"), (pc.and_(is_desc, wanted), "description")):
            n = pc.sum(mask).as_py() or 0
            if not n:
                continue
            key, text, prio, off = s.filter(mask), o.filter(mask), priority.filter(mask), offset.filter(mask)
            out.append(raw_table(n, kind=ENTITY, key=key, **{column: text}, priority=prio, file=file, offset=off))
        unwanted = pc.and_(is_text, pc.invert(wanted))
        out.append(_count_by(p.filter(unwanted), SKIP_LANGUAGE, file))

    other_lit = pc.and_(lit, pc.invert(is_text))
    kept = pc.and_(other_lit, pc.is_in(p, value_set=pa.array(cfg.keep_literal_predicates, pa.string())))
    out.append(_count_by(p.filter(pc.and_(other_lit, pc.invert(kept))), SKIP_LITERAL, file))

    graph_split = cfg.splits.graph_split()
    g = q["g"].combine_chunks()
    node = pc.invert(lit)
    if not cfg.include_types:
        types = pc.and_(node, pc.equal(p, RDF_TYPE))
        out.append(_count_by(p.filter(types), SKIP_TYPE, file))
        node = pc.and_(node, pc.invert(types))
    triple_mask = pc.or_(node, kept)
    n = pc.sum(triple_mask).as_py() or 0
    if n:
        tail = skolemise(o.filter(node), scope)
        if pc.any(kept).as_py():
            kept_rows = q.filter(kept).to_pydict()
            keys = [literal_key(v, lang, dt) for v, lang, dt in zip(kept_rows["o"], kept_rows["lang"], kept_rows["datatype"])]
            out.append(raw_table(len(keys), kind=ENTITY, key=pa.array(keys, pa.string()), name=pa.array(kept_rows["o"], pa.string()),
                                 priority=0, file=file, offset=pa.array(kept_rows["offset"], pa.int64())))
            # triple rows in statement order: node objects, then kept literals
            tails = pa.concat_arrays([tail, pa.array(keys, pa.string())])
            order = [node, kept]
        else:
            tails, order = tail, [node]
        heads = pa.concat_arrays([s.filter(m) for m in order])
        preds = pa.concat_arrays([p.filter(m) for m in order])
        graphs = pa.concat_arrays([g.filter(m) for m in order])
        offs = pa.concat_arrays([offset.filter(m) for m in order])
        splits = _splits(graphs, graph_split, split)
        out.append(raw_table(n, kind=TRIPLE, split=splits, head=heads, relation=preds, tail=tails, file=file, offset=offs))
    out = [t for t in out if t.num_rows]
    return pa.concat_tables(out) if out else RAW_SCHEMA.empty_table()


def _splits(graphs: pa.Array, graph_split: dict[str, str], default: str):
    if not graph_split or graphs.null_count == len(graphs):
        return default
    keys = list(graph_split)
    idx = pc.index_in(graphs, value_set=pa.array(keys, pa.string()))
    mapped = pc.take(pa.array([graph_split[k] for k in keys], pa.string()), idx)
    return pc.fill_null(mapped, default)
