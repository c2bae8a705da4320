"""``kgscale predict``: the graph's missing links in bulk, as a Parquet table.

For a set of queries (every (h, r) of a relation, a list of heads, a file of
(entity, relation) pairs, or a split's triples), each query's top-k answers
by the trained embedder: entity views by the key tower and query views by the
query tower, embedded on Ray Data actor pools over every CPU/GPU of the
cluster (the same views and embedding cache as ``kgscale eval kgc``), then
scored against every entity in chunks. Known triples are filtered out, or
kept and marked with ``keep_known``; ``min_score`` drops weaker answers; the
query's own entity is no answer unless ``include_self``. A
query that names an unknown entity or relation is a counted reject with its
reason (``strict``: an error). Writes::

    OUT/
      predictions.parquet  query_entity, relation, direction, candidate, rank, score, known
                           (keys), with the integer ids beside them
      rejects.jsonl        queries that could not be asked, with the reason
      manifest.json        config, counts, the model and snapshot
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from kgscale.config import StrictModel, stage_path
from kgscale.eval.embedding import EmbedConfig
from kgscale.eval.errors import EvalInputError
from kgscale.kg.answers import AnswerIndex
from kgscale.kg.rejects import RowLog
from kgscale.models.backbone import ModelSetting

CHUNK_QUERIES = 1024  # queries scored against every entity at once


class PredictConfig(StrictModel):
    """The ``predict:`` section of ``kgscale predict --config``."""

    snapshot: Path = stage_path("input")
    out: Path = stage_path("output")
    # the embedder: a trained model directory (or any model `kgscale eval kgc` takes),
    # and its embedding settings, as kgc.model / kgc.embed
    model: ModelSetting
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    # which queries: every (h, r) of `relation` whose h appears with it (or every entity with
    # `all_entities`), the `heads` listed, the (entity, relation) `pairs` of a TSV file, or a `split`
    relation: str | None = None
    heads: list[str] = []
    pairs: Path | None = None
    split: Literal["train", "valid", "test"] | None = None
    all_entities: bool = False
    # tail: (h, r, ?); head: (?, r, t) by the inverse view; both: each query both ways
    direction: Literal["tail", "head", "both"] = "tail"
    top_k: int = Field(10, ge=1, le=1000)
    # keep known triples among the answers, marked known = true (default: filtered out)
    keep_known: bool = False
    # the splits whose triples count as known
    known_splits: tuple[Literal["train", "valid", "test"], ...] = ("train", "valid", "test")
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    # the query's own entity as an answer ((x, r, x)): a text embedder ranks it
    # high for most relations, and it is rarely a link worth writing back; the
    # evaluation protocol keeps it (set this for the same top-k as kgscale eval kgc)
    include_self: bool = False
    strict: bool = False
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        given = [n for n, v in (("relation", self.relation and not self.heads), ("heads", self.heads),
                                ("pairs", self.pairs), ("split", self.split)) if v]
        if len(given) != 1:
            raise ValueError("say which queries with exactly one of: relation (every head of it), heads (with "
                             f"relation), pairs (a TSV of entity and relation), split; got {given or 'none'}")
        if self.heads and not self.relation:
            raise ValueError("heads: needs relation, the relation asked of each head")
        return self


class QueryRejects(RowLog):
    """Queries that could not be asked: the reason and where the query came
    from (the pairs file and line, the entity or relation named)."""

    def add(self, reason: str, **where) -> None:
        self._record({"reason": reason, **where})


def resolve_queries(cfg: PredictConfig, snap) -> tuple[np.ndarray, np.ndarray, np.ndarray, QueryRejects]:
    """(entity, relation, inverse) id arrays of the queries, and the rejects."""
    keys = snap.entities["key"].to_pylist()
    by_key = {k: i for i, k in enumerate(keys)}
    rel_keys = snap.relations["key"].to_pylist()
    rel_by = {k: i for i, k in enumerate(rel_keys)}
    rel_by.update({t.casefold(): i for i, t in enumerate(snap.relation_texts) if t.casefold() not in rel_by})
    rejects = QueryRejects()
    pairs: list[tuple[int, int]] = []

    def relation(ref: str, **where) -> int | None:
        i = rel_by.get(ref, rel_by.get(ref.strip().casefold()))
        if i is None:
            rejects.add("unknown relation", relation=ref[:200], **where)
        return i

    if cfg.split is not None:  # the split's own queries: (h, r) for tails, (t, r) for heads
        t = snap.triples(cfg.split)
        rels = t["relation"].to_numpy().astype(np.int64)
        sides = {"tail": [("head", 0)], "head": [("tail", 1)], "both": [("head", 0), ("tail", 1)]}[cfg.direction]
        q = np.unique(np.concatenate([np.stack([t[col].to_numpy().astype(np.int64), rels,
                                                np.full(len(rels), d, np.int64)], 1) for col, d in sides]), axis=0)
        return q[:, 0], q[:, 1], q[:, 2], rejects
    if cfg.pairs is not None:
        for n, line in enumerate(Path(cfg.pairs).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                rejects.add("not two tab-separated fields", file=str(cfg.pairs), line=n, raw=line[:200])
                continue
            e, r = by_key.get(parts[0]), relation(parts[1], file=str(cfg.pairs), line=n)
            if e is None:
                rejects.add("unknown entity", entity=parts[0][:200], file=str(cfg.pairs), line=n)
            elif r is not None:
                pairs.append((e, r))
    else:
        r = relation(cfg.relation)
        if r is not None:
            if cfg.heads:
                for h in cfg.heads:
                    if h in by_key:
                        pairs.append((by_key[h], r))
                    else:
                        rejects.add("unknown entity", entity=h[:200])
            elif cfg.all_entities:
                pairs = [(e, r) for e in range(len(keys))]
            else:  # every entity that takes part in the relation on the side a query asks from
                t = snap.triples(("train", "valid", "test"))
                of_r = t["relation"].to_numpy() == r
                asked = {"tail": [("head", 0)], "head": [("tail", 1)], "both": [("head", 0), ("tail", 1)]}
                q = [(int(e), r, d) for col, d in asked[cfg.direction] for e in np.unique(t[col].to_numpy()[of_r])]
                if not q:
                    z = np.zeros(0, np.int64)
                    return z, z, z, rejects
                a = np.array(q, np.int64)
                return a[:, 0], a[:, 1], a[:, 2], rejects
    if not pairs:
        entity = np.zeros(0, np.int64)
        return entity, entity, entity, rejects
    pairs = list(dict.fromkeys(pairs))  # a query asked twice is answered once
    entity = np.array([p[0] for p in pairs], np.int64)
    rel = np.array([p[1] for p in pairs], np.int64)
    if cfg.direction == "both":
        return (np.concatenate([entity, entity]), np.concatenate([rel, rel]),
                np.concatenate([np.zeros(len(pairs), np.int64), np.ones(len(pairs), np.int64)]), rejects)
    inv = np.full(len(pairs), 1 if cfg.direction == "head" else 0, np.int64)
    return entity, rel, inv, rejects


def top_answers(query_emb: np.ndarray, cand_emb: np.ndarray, candidates: np.ndarray, index: AnswerIndex,
                entity: np.ndarray, rel: np.ndarray, inv: np.ndarray, top_k: int, keep_known: bool,
                min_score: float | None, include_self: bool = True):
    """(query row, candidate entity id, rank, score, known) arrays, best first within each query."""
    import torch

    cand = torch.from_numpy(np.ascontiguousarray(cand_emb, dtype=np.float32))
    row_of = np.full(int(candidates.max()) + 1 if len(candidates) else 0, -1, np.int64)
    row_of[candidates] = np.arange(len(candidates))
    start, stop = index.spans(entity, rel, inv)
    k = min(top_k, len(candidates))
    out_q, out_c, out_rank, out_s, out_known = [], [], [], [], []
    with torch.inference_mode():
        for lo in range(0, len(entity), CHUNK_QUERIES):
            hi = min(lo + CHUNK_QUERIES, len(entity))
            s = torch.from_numpy(np.ascontiguousarray(query_emb[lo:hi], dtype=np.float32)) @ cand.T
            known = np.zeros(s.shape, dtype=bool)
            for j in range(hi - lo):
                ans = index.answers[start[lo + j]:stop[lo + j]]
                ans = row_of[ans[ans < len(row_of)]]
                known[j, ans[ans >= 0]] = True
            if not keep_known:
                s[torch.from_numpy(known)] = float("-inf")
            if not include_self:
                own = row_of[np.minimum(entity[lo:hi], len(row_of) - 1)]
                ok = (own >= 0) & (entity[lo:hi] < len(row_of))
                s[torch.from_numpy(np.flatnonzero(ok)), torch.from_numpy(own[ok])] = float("-inf")
            score, col = torch.topk(s, k, dim=1)
            score, col = score.numpy(), col.numpy()
            for j in range(hi - lo):
                ok = np.isfinite(score[j]) & (score[j] >= (min_score if min_score is not None else -np.inf))
                n = int(ok.sum())
                out_q.append(np.full(n, lo + j, np.int64))
                out_c.append(candidates[col[j][ok]])
                out_rank.append(np.arange(1, n + 1, dtype=np.int32))
                out_s.append(score[j][ok].astype(np.float32))
                out_known.append(known[j, col[j][ok]])
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    return (cat(out_q, np.int64), cat(out_c, np.int64), cat(out_rank, np.int32), cat(out_s, np.float32),
            cat(out_known, bool))


def run_predict(cfg: PredictConfig, ray_cfg=None) -> dict:
    from kgscale.eval.embedding import completion_views, embed_parts
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.backbone import with_absolute_path
    from kgscale.models.inference import check_loadable, load_inference_tokenizer
    from kgscale.output import StageOutput
    from kgscale.ray_session import ensure_ray

    model, embed = with_absolute_path(cfg.model), cfg.embed
    stage = StageOutput("predict", cfg.out, cfg.overwrite)
    timer = stage.timer
    snap = Snapshot(cfg.snapshot)
    kind = check_loadable(model)
    entity, rel, inv, rejects = resolve_queries(cfg, snap)
    ent_texts, rel_texts = snap.entity_texts, snap.relation_texts
    has_text = np.array([bool(t) for t in ent_texts])
    keep = has_text[entity] if len(entity) else np.zeros(0, bool)
    keys, rel_keys = snap.entities["key"].to_pylist(), snap.relations["key"].to_pylist()
    for i in np.flatnonzero(~keep):
        rejects.add("entity has no text", entity=keys[entity[i]], relation=rel_keys[rel[i]])
    entity, rel, inv = entity[keep], rel[keep], inv[keep]
    if rejects and cfg.strict:
        r = rejects.rows[0]
        raise EvalInputError(f"query rejected: {r['reason']}: {json.dumps({k: v for k, v in r.items() if k != 'reason'})}")
    if len(entity) == 0:
        first = ""
        if rejects:
            r = rejects.rows[0]
            first = f"; the first: {r['reason']} {json.dumps({k: v for k, v in r.items() if k != 'reason'})}"
            if r["reason"] == "unknown relation":
                shown = ", ".join(rel_keys[:20]) + (" ..." if len(rel_keys) > 20 else "")
                first += f" (relations are: {shown})"
        raise EvalInputError(f"no query to answer: {len(rejects)} rejected{first}")
    candidates = np.flatnonzero(has_text)
    views, q_texts = completion_views(load_inference_tokenizer(model), kind, embed, ent_texts, rel_texts, entity, rel, inv)
    ensure_ray(ray_cfg)
    with timer("embed"):
        cand_emb, query_emb = embed_parts([([views[i] for i in candidates], "key"), (q_texts, "query")], model, embed)
    with timer("score"):
        index = AnswerIndex.from_snapshot(snap, tuple(cfg.known_splits))
        q, c, rank, score, known = top_answers(query_emb, cand_emb, candidates, index, entity, rel, inv, cfg.top_k,
                                               cfg.keep_known, cfg.min_score, cfg.include_self)
    table = pa.table({
        "query_entity": pa.array([keys[x] for x in entity[q]], pa.string()),
        "relation": pa.array([rel_keys[x] for x in rel[q]], pa.string()),
        "direction": pa.array(np.where(inv[q] == 1, "head", "tail"), pa.string()),
        "candidate": pa.array([keys[x] for x in c], pa.string()),
        "rank": pa.array(rank, pa.int32()), "score": pa.array(score, pa.float32()),
        "known": pa.array(known, pa.bool_()),
        "query_entity_id": pa.array(entity[q], pa.int64()), "relation_id": pa.array(rel[q], pa.int64()),
        "candidate_id": pa.array(c, pa.int64()),
    })
    with stage.writing() as tmp:
        pq.write_table(table, tmp / "predictions.parquet")
        manifest = stage.finish(
            rejects,
            config={"predict": cfg.model_dump(mode="json", exclude={"model", "embed"}), "model": model.model_dump(),
                    "embed": embed.model_dump()},
            inputs={"snapshot": str(snap.path), "model": str(model.model)},
            counts={"queries": int(len(entity)), "predictions": table.num_rows, "known": int(known.sum()),
                    "candidates": int(len(candidates))},
        )
    return manifest


def summary(manifest: dict, out: Path) -> str:
    c, r = manifest["counts"], manifest["rejected"]
    return (f"kgscale predict: {c['predictions']:,} predictions for {c['queries']:,} queries "
            f"({c['known']:,} of them known triples), {r['total']:,} queries rejected"
            f"{' ' + json.dumps(r['by_reason']) if r['total'] else ''}; predictions.parquet in {out}.")
