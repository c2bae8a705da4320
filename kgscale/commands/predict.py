"""``kgscale predict``: top-k missing links for many queries at once."""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("predict", help="bulk link prediction: each query's top-k answers, as a Parquet table")
    p.add_argument("--snapshot", help="snapshot directory (kgscale ingest)")
    p.add_argument("--model", help="trained model directory (or any embedder kgscale eval kgc takes)")
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
    add_stage_args(p, "output directory", "a query naming an unknown entity or relation is fatal",
                   "predict.top_k=20 predict.embed.batch_size=128", out_required=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.complete.predict import PredictConfig, run_predict, summary

    flags = {"snapshot": args.snapshot, "relation": args.relation, "heads": args.heads, "pairs": args.pairs,
             "split": args.split, "direction": args.direction, "top_k": args.top_k,
             "keep_known": args.keep_known or None, "min_score": args.min_score,
             "include_self": args.include_self or None}
    # the model and its embedding settings are fields of the predict section, as in eval kgc
    return run_stage_command(args, "predict", PredictConfig, run_predict, summary, flags,
                             moved={"model": "predict.model", "embed": "predict.embed"}, model_flag=args.model)
