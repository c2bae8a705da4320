"""``kgscale eval kgc`` and ``kgscale eval qa``"""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model: KG completion ranking, QA accuracy")
    evsub = p.add_subparsers(dest="eval_command", required=True)

    k = evsub.add_parser("kgc", help="filtered KG completion ranking over every entity")
    k.add_argument("--snapshot", help="snapshot directory (kgscale ingest)")
    k.add_argument("--model", help="trained model directory, packaged name, tiny name or hub id")
    k.add_argument("--limit", type=int, help="evaluate only the first N triples of the split")
    add_stage_args(k, "output directory", "an entity without text is an error, not a skip",
                   "kgc.embed.batch_size=128 kgc.rank.chunk_mb=32", out_required=False)
    k.set_defaults(func=run_kgc, command="eval kgc")

    q = evsub.add_parser("qa", help="multiple-choice accuracy and generation-based KGQA")
    q.add_argument("--model", help="model directory, packaged name, tiny name or hub id")
    q.add_argument("--data", action="append", help="multiple-choice JSONL file or a folder of them (repeatable)")
    q.add_argument("--rationales", help="directory with rationales.parquet (joined on question_id)")
    q.add_argument("--kgqa", action="append", help="generation questions: JSONL/Parquet with question and answers")
    q.add_argument("--kgqa-snapshot", help="synthesise 1-hop generation questions from this snapshot's test triples")
    q.add_argument("--limit", type=int, help="only the first N questions of each file")
    add_stage_args(q, "output directory", "the first bad row is fatal", "qa.batch_size=16 qa.answer_length=16",
                   out_required=False)
    q.set_defaults(func=run_qa, command="eval qa")


# the model, the embedder and the ranking are fields of the stage's own
# section, spelled as in a `kgscale run` config's eval.kgc / eval.qa
KGC_MOVED = {"model": "kgc.model", "embed": "kgc.embed", "rank": "kgc.rank"}
QA_MOVED = {"model": "qa.model"}


def run_kgc(args) -> int:
    from kgscale.eval.kgc import KGCConfig, run_kgc as run, summary

    return run_stage_command(args, "kgc", KGCConfig, run, summary, {"snapshot": args.snapshot, "limit": args.limit},
                             moved=KGC_MOVED, model_flag=args.model)


def run_qa(args) -> int:
    from kgscale.eval.qa import QAConfig, run_qa as run, summary

    flags = {"data": args.data, "rationales": args.rationales, "kgqa": args.kgqa, "kgqa_snapshot": args.kgqa_snapshot,
             "limit": args.limit}
    return run_stage_command(args, "qa", QAConfig, run, summary, flags, moved=QA_MOVED, model_flag=args.model)
