"""``kgscale rationales PATHS --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("rationales", help="have a teacher (local model, OpenAI-compatible endpoint, or the path verbaliser) write rationales")
    p.add_argument("paths", help="paths directory (from `kgscale paths`)")
    p.add_argument("--out", required=True, help="rationales directory to write")
    p.add_argument("--strict", action="store_true", help="the first question without a rationale is fatal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p, "rationales.teacher.kind=hf rationales.teacher.model=smollm2-135m-instruct")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.ray_session import RayConfig
    from kgscale.synth.rationales import RationalesConfig, run_rationales, summary

    flags = {"paths": args.paths, "out": args.out, "strict": args.strict or None, "overwrite": args.overwrite or None}
    data = config_sections(args, {"rationales", "ray"}, {"rationales": flags}, moved={"teacher": "rationales.teacher"})
    cfg = build_section(RationalesConfig, data, "rationales", args)
    manifest = run_rationales(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(manifest, cfg.out))
    return 0
