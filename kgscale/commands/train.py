"""``kgscale train CONFIG [--out DIR] [--resume] [key=value ...]``"""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="align a language model with a KG (KaLM, KALE, KILM) on Ray Train")
    p.add_argument("config", help="YAML training config (see jobs/train/*.yaml)")
    p.add_argument("--out", help="output model directory (overrides train.out)")
    p.add_argument("--resume", action="store_true", help="continue the run of OUT from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over: replace OUT and its checkpoints")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=10")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale import config as cfgmod
    from kgscale.train.config import TrainConfig
    from kgscale.train.run import run_train, summary

    if args.resume and args.overwrite:
        raise cfgmod.ConfigError("--resume and --overwrite contradict each other; pass one")
    data = cfgmod.read_yaml(args.config)
    cfgmod.apply_overrides(data, list(args.overrides or []))
    if args.out:
        cfgmod.apply_overrides(data, [f"train.out={args.out}"])
    cfg = cfgmod.build(TrainConfig, data, source=args.config)
    manifest = run_train(cfg, resume=args.resume, overwrite=args.overwrite)
    print(summary(manifest, Path(cfg.train.out)))
    return 0
