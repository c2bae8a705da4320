"""Ranking metrics: MRR, MR, Hits@k, overall, by direction and by relation.

Ranks are expected ranks (see :mod:`kgscale.eval.ranking`), so they may be
x.5 under ties; Hits@k counts rank <= k, MRR averages 1 / rank.
"""
from __future__ import annotations

import numpy as np

HITS_AT = (1, 3, 10)


def rank_metrics(ranks) -> dict:
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        return {"count": 0, "mrr": None, "mr": None, **{f"hits@{k}": None for k in HITS_AT}}
    return {
        "count": int(len(ranks)),
        "mrr": float(np.mean(1.0 / ranks)),
        "mr": float(np.mean(ranks)),
        **{f"hits@{k}": float(np.mean(ranks <= k)) for k in HITS_AT},
    }


def ranking_report(ranks, inverse, relation, relation_names: list[str] | None = None) -> dict:
    """Metrics for tail prediction (``inverse`` False), head prediction and
    both, overall and per relation (keyed by ``relation_names`` when given)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    inverse = np.asarray(inverse, dtype=bool)
    relation = np.asarray(relation)
    sides = {"tail": ~inverse, "head": inverse, "both": np.ones(len(ranks), dtype=bool)}
    report = {side: rank_metrics(ranks[m]) for side, m in sides.items()}
    per_relation = {}
    for r in np.unique(relation):
        in_r = relation == r
        name = relation_names[int(r)] if relation_names is not None else str(int(r))
        per_relation[name] = {side: rank_metrics(ranks[m & in_r]) for side, m in sides.items()}
    report["per_relation"] = per_relation
    return report


def format_metrics(m: dict) -> str:
    if not m["count"]:
        return "no queries"
    return (f"MRR {m['mrr']:.4f}  MR {m['mr']:.1f}  Hits@1 {m['hits@1']:.4f}  "
            f"Hits@3 {m['hits@3']:.4f}  Hits@10 {m['hits@10']:.4f}  ({m['count']:,} queries)")
