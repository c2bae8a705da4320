"""``kgscale paths QUESTIONS --snapshot SNAP --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("paths", help="mine multi-hop KG paths from each question's entities to its answer's")
    p.add_argument("questions", help="questions directory (from `kgscale questions`)")
    p.add_argument("--snapshot", required=True, help="the snapshot the questions were linked against")
    p.add_argument("--out", required=True, help="paths directory to write")
    p.add_argument("--strict", action="store_true", help="the first question that cannot be searched is fatal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_args(p, "paths.search.max_hops=3 paths.search.max_paths=16 paths.workers=2")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.ray_session import RayConfig
    from kgscale.synth.mining import PathsConfig, run_paths, summary

    flags = {"questions": args.questions, "snapshot": args.snapshot, "out": args.out, "strict": args.strict or None,
             "overwrite": args.overwrite or None}
    data = config_sections(args, {"paths", "ray"}, {"paths": flags}, moved={"search": "paths.search"})
    cfg = build_section(PathsConfig, data, "paths", args)
    manifest = run_paths(cfg, build_section(RayConfig, data, "ray", args))
    print(summary(manifest, cfg.out))
    return 0
