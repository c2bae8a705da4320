"""``kgscale paths QUESTIONS --snapshot SNAP --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("paths", help="mine multi-hop KG paths from each question's entities to its answer's")
    p.add_argument("questions", help="questions directory (from `kgscale questions`)")
    p.add_argument("--snapshot", required=True, help="the snapshot the questions were linked against")
    add_stage_args(p, "paths directory to write", "the first question that cannot be searched is fatal",
                   "paths.search.max_hops=3 paths.search.max_paths=16 paths.workers=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.synth.mining import PathsConfig, run_paths, summary

    return run_stage_command(args, "paths", PathsConfig, run_paths, summary,
                             {"questions": args.questions, "snapshot": args.snapshot}, moved={"search": "paths.search"})
