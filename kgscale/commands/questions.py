"""``kgscale questions SOURCE --snapshot SNAP --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("questions", help="link QA questions to a snapshot's entities, or synthesise k-hop questions from it")
    p.add_argument("source", help="a multiple-choice QA .jsonl file, or `kg` to synthesise questions from the snapshot")
    p.add_argument("--snapshot", required=True, help="snapshot directory (from `kgscale ingest`)")
    p.add_argument("--out", required=True, help="questions directory to write")
    p.add_argument("--strict", action="store_true", help="the first rejected question is fatal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p, "questions.link.wordnet_dir=/usr/share/wordnet questions.kg.hops=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.ray_session import RayConfig
    from kgscale.synth.questions_stage import QuestionsConfig, run_questions, summary

    flags = {"source": args.source, "snapshot": args.snapshot, "out": args.out, "strict": args.strict or None,
             "overwrite": args.overwrite or None}
    data = config_sections(args, {"questions", "ray"}, {"questions": flags},
                           moved={"link": "questions.link", "kg": "questions.kg"})
    cfg = build_section(QuestionsConfig, data, "questions", args)
    manifest = run_questions(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(manifest, cfg.out))
    return 0
