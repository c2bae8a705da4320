"""``kgscale info DIR``: what a snapshot holds, at a glance."""
from __future__ import annotations

from kgscale.kg.graph import CSRGraph, degree_summary
from kgscale.kg.snapshot import Snapshot


def snapshot_info(path) -> dict:
    snap = Snapshot(path)
    graph = CSRGraph.from_snapshot(snap, splits=("train",))
    return {
        "path": str(snap.path),
        "source": snap.manifest.get("source"),
        "entities": snap.num_entities,
        "relations": snap.num_relations,
        "triples": snap.split_counts(),
        "rejected": snap.manifest.get("rejected", {}).get("total", 0),
        "train_graph": {"edges_both_directions": graph.num_edges, "degree": degree_summary(graph.degree())},
    }


def format_info(info: dict) -> str:
    t = info["triples"]
    d = info["train_graph"]["degree"]
    lines = [
        f"snapshot   {info['path']}",
        f"entities   {info['entities']:,}",
        f"relations  {info['relations']:,}",
        "triples    " + "  ".join(f"{s} {n:,}" for s, n in t.items()) + f"  (total {sum(t.values()):,})",
        f"rejected   {info['rejected']:,}",
        f"degree     over the training graph, both directions: min {d['min']}  median {d['median']:g}  "
        f"mean {d['mean']:g}  p90 {d['p90']:g}  p99 {d['p99']:g}  max {d['max']:,}  isolated {d['isolated']:,}",
        "histogram  " + "  ".join(f"{k}: {v:,}" for k, v in d["histogram"].items()),
    ]
    return "\n".join(lines)
