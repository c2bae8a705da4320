"""``kgscale questions SOURCE --snapshot SNAP --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("questions", help="link QA questions to a snapshot's entities, or synthesise k-hop questions from it")
    p.add_argument("source", help="a multiple-choice QA .jsonl file, or `kg` to synthesise questions from the snapshot")
    p.add_argument("--snapshot", required=True, help="snapshot directory (from `kgscale ingest`)")
    add_stage_args(p, "questions directory to write", "the first rejected question is fatal",
                   "questions.link.wordnet_dir=/usr/share/wordnet questions.kg.hops=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.synth.questions_stage import QuestionsConfig, run_questions, summary

    return run_stage_command(args, "questions", QuestionsConfig, run_questions, summary,
                             {"source": args.source, "snapshot": args.snapshot},
                             moved={"link": "questions.link", "kg": "questions.kg"})
