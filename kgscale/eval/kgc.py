"""KG completion evaluation: :func:`evaluate_kgc` (a library call that writes
nothing, as PyKEEN's evaluators are) and the stage around it, ``kgscale eval
kgc`` (:func:`run_kgc`).

Embed every entity (tail view) and every test query, (h, r) for tails and
(t, r^-1) for heads, rank all entities by cosine with the other true answers
of train + valid + test filtered out, and write::

    OUT/
      metrics.json     MRR, MR, Hits@1/3/10 for tail, head and both, per relation,
                       the tie rule, what was skipped and why, timings
      examples.json    a few seeded queries with their top-5 candidates
      ranks.parquet    one row a query: split row, head, relation, tail (ids and keys),
                       direction, target, rank
      rejects.jsonl    test triples not evaluated, with the reason
      manifest.json

A test triple whose head or tail has no text cannot be embedded: it is
skipped, counted and written to rejects.jsonl (``strict``: an error). An
entity without text is no candidate either. A snapshot without triples in the
evaluated split is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pydantic import Field

from kgscale.config import StrictModel, stage_path
from kgscale.eval.errors import EvalInputError
from kgscale.eval.examples import sample_queries, top_candidates
from kgscale.eval.embedding import EmbedConfig, completion_views, embed_parts
from kgscale.kg.answers import AnswerIndex, query_keys
from kgscale.kg.rejects import TripleRejects
from kgscale.eval.metrics import format_metrics, ranking_report
from kgscale.eval.ranking import QueryFilters, filtered_ranks
from kgscale.models.backbone import BackboneConfig, ModelSetting, with_absolute_path
from kgscale.models.inference import load_inference_tokenizer
from kgscale.models.towers import key_tower_dir
from kgscale.output import StageOutput, Timer

TIE_RULE = ("expected rank: 1 + #(unfiltered candidates scoring above the true answer) "
            "+ #(unfiltered other candidates scoring exactly the same) / 2")


class RankConfig(StrictModel):
    # MiB of scores computed at once: chunk rows = chunk_mb / (4 bytes * entities)
    chunk_mb: float = 256.0
    # auto: cuda when the driver has a GPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # rank against the candidate embeddings sharded over this many Ray actors,
    # spread over the cluster's nodes (each holds only its shard and its
    # score buffer; ranks identical to the single-process ranking); 0: in
    # the driver (kgscale.eval.sharded_ranking)
    shards: int = Field(0, ge=0)
    # CPUs of each shard actor (its torch and numba threads); with device
    # cuda each shard actor takes one GPU
    shard_cpus: float = Field(1.0, gt=0)


class KGCSettings(StrictModel):
    """How KG completion is evaluated (:func:`evaluate_kgc`)."""

    split: Literal["test", "valid"] = "test"
    # the true answers filtered from the ranking
    filter_splits: tuple[Literal["train", "valid", "test"], ...] = ("train", "valid", "test")
    # evaluate only the first N triples of the split (smoke runs); None: all
    limit: int | None = None
    # also report ranks with the query's own entity removed from the candidates
    # (a text encoder that was never trained on the graph finds the query's own
    # entity most similar to the query; the standard protocol keeps it)
    also_excluding_query_entity: bool = True
    # example queries (the same seeded ones for every model) written with
    # their top-5 candidates to examples.json, for the run report
    examples: int = Field(12, ge=0, le=1000)
    # a test triple naming an entity without text is an error, not skipped
    strict: bool = False


class KGCConfig(KGCSettings):
    """The ``kgscale eval kgc`` stage: the model, the settings of its
    embedding and of the ranking, the snapshot it reads and the directory it
    writes (the ``kgc:`` section of ``kgscale eval kgc --config``, and
    ``eval.kgc`` in a ``kgscale run`` config)."""

    snapshot: Path = stage_path("input")
    out: Path = stage_path("output")
    overwrite: bool = False
    # the model evaluated: a packaged or tiny name, a directory, a hub id, or
    # a mapping of model settings ({model: ..., kind: ..., gguf_file: ...})
    model: ModelSetting
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    rank: RankConfig = Field(default_factory=RankConfig)


def _rank(queries, candidates, targets, filters, filters_x, rank: RankConfig, device):
    """(ranks, ranks with ``filters_x`` or None), in the driver or over shard actors."""
    if not rank.shards:
        def ranks_of(f):
            return filtered_ranks(queries, candidates, targets, f, chunk_mb=rank.chunk_mb, device=device)
        return ranks_of(filters), (ranks_of(filters_x) if filters_x is not None else None)
    from kgscale.eval.sharded_ranking import ShardedRanker

    opts = {"num_cpus": rank.shard_cpus, **({"num_gpus": 1} if device == "cuda" else {})}
    with ShardedRanker(candidates, num_shards=min(rank.shards, len(candidates)), chunk_mb=rank.chunk_mb,
                       actor_options=opts, device=device) as ranker:
        return ranker.ranks(queries, targets, filters), (
            ranker.ranks(queries, targets, filters_x) if filters_x is not None else None)


@dataclass
class KGCEvaluation:
    """What :func:`evaluate_kgc` measured: ``metrics`` (MRR, MR, Hits@k for
    tail, head and both, per relation, counts, timings), ``ranks`` (one row a
    query), ``examples`` (seeded queries with their top candidates) and
    ``skipped`` (test triples not evaluated, with the reason)."""

    metrics: dict
    ranks: pa.Table
    examples: list[dict]
    skipped: TripleRejects
    snapshot_created_at: str | None = None


def evaluate_kgc(snapshot, model: BackboneConfig | str, settings: KGCSettings | None = None,
                 embed: EmbedConfig | None = None, rank: RankConfig | None = None, ray_cfg=None,
                 timer: Timer | None = None) -> KGCEvaluation:
    """Filtered KG completion of ``model`` on ``snapshot`` (a
    :class:`~kgscale.kg.snapshot.Snapshot` or its directory), as a library
    call: nothing is written. ``model`` is a backbone config or what its
    ``model`` field takes (a packaged name, a directory). Embedding runs on
    the Ray cluster (``ray_cfg``, or a local one)."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.inference import check_loadable
    from kgscale.ray_session import ensure_ray

    cfg = settings or KGCSettings()
    embed, rank, timer = embed or EmbedConfig(), rank or RankConfig(), timer or Timer()
    model = BackboneConfig(model=str(model)) if isinstance(model, (str, Path)) else model
    model = with_absolute_path(model)  # the inference actors run in their own working directory
    snap = snapshot if isinstance(snapshot, Snapshot) else Snapshot(snapshot)
    kind = check_loadable(model)  # a missing checkpoint fails here, before Ray starts
    split = snap.triples(cfg.split)
    if split.num_rows == 0:
        raise EvalInputError(f"{snap.path} has no {cfg.split} triples: nothing to evaluate "
                             f"(split counts: {snap.split_counts()})")
    if cfg.limit is not None:
        split = split.slice(0, cfg.limit)
    head = split["head"].to_numpy().astype(np.int64)
    rel = split["relation"].to_numpy().astype(np.int64)
    tail = split["tail"].to_numpy().astype(np.int64)

    with timer("texts"):
        ent_texts = snap.entity_texts
        rel_texts = snap.relation_texts
        keys = snap.entities["key"].to_pylist()
        rel_keys = snap.relations["key"].to_pylist()
        has_text = np.array([bool(t) for t in ent_texts])
        tokenizer = load_inference_tokenizer(model)
    skipped = TripleRejects(strict=cfg.strict, error=EvalInputError)
    ok = has_text[head] & has_text[tail]
    for i in np.flatnonzero(~ok):
        missing = [keys[x] for x in (head[i], tail[i]) if not has_text[x]]
        skipped.add(cfg.split, i, keys[head[i]], int(rel[i]), keys[tail[i]],
                    f"entity has no text: {', '.join(dict.fromkeys(missing))}")
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        raise EvalInputError(f"every {cfg.split} triple names an entity without text; nothing to evaluate")

    # Queries: (h, r, ->) with answer t, then (t, r, <-) with answer h.
    m = len(rows)
    q_entity = np.concatenate([head[rows], tail[rows]])
    q_rel = np.concatenate([rel[rows], rel[rows]])
    q_inv = np.concatenate([np.zeros(m, np.int64), np.ones(m, np.int64)])
    q_target = np.concatenate([tail[rows], head[rows]])
    q_row = np.concatenate([rows, rows])
    # the same (entity, relation, direction) asked twice is embedded once
    uniq, first, q_slot = np.unique(query_keys(q_entity, q_rel, q_inv, snap.num_relations),
                                    return_index=True, return_inverse=True)
    ent_views, uniq_texts = completion_views(tokenizer, kind, embed, ent_texts, rel_texts, q_entity[first],
                                             q_rel[first], q_inv[first])

    candidates = np.flatnonzero(has_text)
    row_of = np.full(snap.num_entities, -1, np.int64)
    row_of[candidates] = np.arange(len(candidates))

    ensure_ray(ray_cfg)
    with timer("embed"):
        # entity views by the key tower (a two-tower model's own), queries by the query tower
        cand_emb, query_emb = embed_parts([([ent_views[i] for i in candidates], "key"), (uniq_texts, "query")],
                                          model, embed)
        query_emb = query_emb[q_slot]
    with timer("filters"):
        index = AnswerIndex.from_snapshot(snap, tuple(cfg.filter_splits))
        start, stop = index.spans(q_entity, q_rel, q_inv)
        filters = QueryFilters(start=start, stop=stop, answers=row_of[index.answers])
    with timer("rank"):
        device = None if rank.device == "auto" else rank.device
        ranks, ranks_x = _rank(query_emb, cand_emb, row_of[q_target], filters,
                               filters.with_extra(row_of[q_entity]) if cfg.also_excluding_query_entity else None,
                               rank, device)

    picks = sample_queries(m, cfg.examples)
    examples = [{
        "query": uniq_texts[q_slot[i]], "entity": keys[q_entity[i]], "relation": rel_keys[q_rel[i]],
        "direction": "head" if q_inv[i] else "tail", "answer": keys[q_target[i]],
        "answer_text": ent_texts[q_target[i]], "rank": float(ranks[i]),
        "top": [{"entity": keys[candidates[c]], "text": ent_texts[candidates[c]], "score": round(score, 4),
                 "is_answer": bool(candidates[c] == q_target[i]),
                 "is_query_entity": bool(candidates[c] == q_entity[i])} for c, score in top]}
        for i, top in zip(picks, top_candidates(query_emb, cand_emb, row_of[q_target], filters, picks))]
    report = ranking_report(ranks, q_inv.astype(bool), q_rel, relation_names=rel_keys)
    metrics = {
        "model": model.model_dump(),
        "model_kind": kind,
        "snapshot": str(snap.path),
        "split": cfg.split,
        "filter_splits": list(cfg.filter_splits),
        "tie_rule": TIE_RULE,
        "scoring": "cosine of L2-normalised embeddings; entity tail view vs (h, r) / (t, r^-1) query view",
        "pooling": embed.pooling if embed.pooling != "auto" else ("last" if kind == "causal" else "mean"),
        "entities": snap.num_entities,
        "candidates": int(len(candidates)),
        "candidates_without_text": int((~has_text).sum()),
        "triples_in_split": int(snap.split_counts().get(cfg.split, 0)),
        "triples_evaluated": int(m),
        "triples_skipped": {"total": len(skipped), "entity has no text": len(skipped)},
        "queries": int(len(ranks)),
        "unique_query_texts": int(len(uniq)),
        "embedding_dim": int(cand_emb.shape[1]),
        "towers": "query and key" if key_tower_dir(model.model) is not None else "one",
        **{k: report[k] for k in ("tail", "head", "both")},
        "per_relation": report["per_relation"],
    }
    if ranks_x is not None:
        rx = ranking_report(ranks_x, q_inv.astype(bool), q_rel)
        metrics["excluding_query_entity"] = {k: rx[k] for k in ("tail", "head", "both")}
    ranks_table = pa.table({
        "split_row": pa.array(q_row, pa.int64()),
        "head": pa.array(head[q_row], pa.int32()),
        "relation": pa.array(q_rel, pa.int32()),
        "relation_key": pa.array([rel_keys[x] for x in q_rel], pa.string()),
        "tail": pa.array(tail[q_row], pa.int32()),
        "head_key": pa.array([keys[x] for x in head[q_row]], pa.string()),
        "tail_key": pa.array([keys[x] for x in tail[q_row]], pa.string()),
        "direction": pa.array(np.where(q_inv == 1, "head", "tail"), pa.string()),
        "target": pa.array(q_target, pa.int32()),
        "rank": pa.array(ranks, pa.float64()),
        **({"rank_excluding_query_entity": pa.array(ranks_x, pa.float64())} if ranks_x is not None else {}),
    })
    metrics["timings_s"] = timer.total()
    return KGCEvaluation(metrics=metrics, ranks=ranks_table, examples=examples, skipped=skipped,
                         snapshot_created_at=snap.manifest.get("created_at"))


def run_kgc(cfg: KGCConfig, ray_cfg=None) -> dict:
    """The stage: :func:`evaluate_kgc`, then its results written to ``cfg.out``."""
    stage = StageOutput("eval-kgc", cfg.out, cfg.overwrite)
    timer = stage.timer
    ev = evaluate_kgc(cfg.snapshot, cfg.model, cfg, cfg.embed, cfg.rank, ray_cfg, timer)
    metrics = ev.metrics
    with stage.writing() as tmp:
        with timer("write"):
            pq.write_table(ev.ranks, tmp / "ranks.parquet")
            (tmp / "examples.json").write_text(json.dumps(ev.examples, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
        metrics["timings_s"] = timer.total()
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        manifest = stage.finish(
            ev.skipped,
            config={"kgc": cfg.model_dump(mode="json", exclude={"model", "embed", "rank"}), "model": metrics["model"],
                    "embed": cfg.embed.model_dump(), "rank": cfg.rank.model_dump()},
            inputs={"snapshot": metrics["snapshot"], "snapshot_created_at": ev.snapshot_created_at},
            counts={"queries": metrics["queries"], "triples_evaluated": metrics["triples_evaluated"],
                    "candidates": metrics["candidates"]},
            metrics={side: metrics[side] for side in ("tail", "head", "both")},
        )
    return manifest | {"metrics": metrics}


def summary(result: dict, out: Path) -> str:
    m = result["metrics"]
    t = m["timings_s"]
    skipped = m["triples_skipped"]["total"]
    return (
        f"Evaluated {m['model']['model']} on {m['triples_evaluated']:,} {m['split']} triples of {m['snapshot']} "
        f"({m['queries']:,} queries ranked over {m['candidates']:,} entities, filtered by "
        f"{' + '.join(m['filter_splits'])}; {skipped:,} triples skipped for entities without text). "
        f"Both directions: {format_metrics(m['both'])}; tail: MRR {m['tail']['mrr']:.4f}, head: MRR {m['head']['mrr']:.4f}. "
        + (f"Without the query's own entity as a candidate: MRR {m['excluding_query_entity']['both']['mrr']:.4f}, "
           f"Hits@1 {m['excluding_query_entity']['both']['hits@1']:.4f}. " if "excluding_query_entity" in m else "")
        + f"Embedding {t.get('embed', 0):.1f} s, ranking {t.get('rank', 0):.1f} s, total {t['total']:.1f} s; "
        f"metrics.json and ranks.parquet in {out}."
    )
