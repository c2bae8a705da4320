"""``kgscale rationales PATHS --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("rationales", help="have a teacher (local model, OpenAI-compatible endpoint, or the path verbaliser) write rationales")
    p.add_argument("paths", help="paths directory (from `kgscale paths`)")
    add_stage_args(p, "rationales directory to write", "the first question without a rationale is fatal",
                   "rationales.teacher.kind=hf rationales.teacher.model=smollm2-135m-instruct")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.synth.rationales import RationalesConfig, run_rationales, summary

    return run_stage_command(args, "rationales", RationalesConfig, run_rationales, summary, {"paths": args.paths},
                             moved={"teacher": "rationales.teacher"})
