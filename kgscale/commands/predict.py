"""``kgscale predict``: top-k missing links for many queries at once."""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("predict", help="bulk link prediction: each query's top-k answers, as a Parquet table")
    p.add_argument("--snapshot", help="snapshot directory (kgscale ingest)")
    p.add_argument("--model", help="trained model directory (or any embedder kgscale eval kgc takes)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--relation", help="ask this relation (key or text) of every entity that takes part in it, "
                                      "or of --head ones")
    p.add_argument("--head", action="append", dest="heads", metavar="ENTITY", help="an entity key to ask (repeatable)")
    p.add_argument("--pairs", help="TSV file of (entity key, relation) pairs to ask")
    p.add_argument("--split", choices=["train", "valid", "test"], help="ask the queries of a split's triples")
    p.add_argument("--direction", choices=["tail", "head", "both"], help="tails (default), heads, or both")
    p.add_argument("--top-k", type=int, dest="top_k", help="answers per query (default 10)")
    p.add_argument("--keep-known", action="store_true", help="keep known triples among the answers, marked")
    p.add_argument("--min-score", type=float, dest="min_score", help="drop answers scoring below this cosine")
    p.add_argument("--include-self", action="store_true", dest="include_self",
                   help="let the query's own entity be an answer, as the evaluation protocol does")
    p.add_argument("--strict", action="store_true", help="a query naming an unknown entity or relation is fatal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p, "predict.top_k=20 embed.batch_size=128")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.complete.predict import PredictConfig, run_predict, summary
    from kgscale.eval.embedding import EmbedConfig
    from kgscale.models.backbone import BackboneConfig
    from kgscale.ray_session import RayConfig

    flags = {"snapshot": args.snapshot, "out": args.out, "relation": args.relation, "heads": args.heads,
             "pairs": args.pairs, "split": args.split, "direction": args.direction, "top_k": args.top_k,
             "keep_known": args.keep_known or None, "min_score": args.min_score, "include_self": args.include_self or None,
             "strict": args.strict or None,
             "overwrite": args.overwrite or None}
    data = config_sections(args, {"predict", "model", "embed", "ray"}, {"predict": flags, "model": {"model": args.model}})
    cfg = build_section(PredictConfig, data, "predict", args)
    model = build_section(BackboneConfig, data, "model", args)
    embed = build_section(EmbedConfig, data, "embed", args)
    ray_cfg = build_section(RayConfig, data, "ray", args)
    manifest = run_predict(cfg, model, embed, ray_cfg)
    print(summary(manifest, cfg.out))
    return 0
