"""The ``kgscale`` command line.

Each subcommand reads an optional YAML config (``--config FILE``), applies
``key=value`` overrides given after its arguments, validates the result into
its typed config, runs, and ends with a one-paragraph summary. Errors in
configs and inputs exit with status 2 and a message that names the problem.
"""
from __future__ import annotations

import argparse
import json
import sys

from kgscale import config as cfgmod


def _section(args, name: str, extra: dict) -> dict:
    data = cfgmod.read_yaml(args.config) if args.config else {}
    cfgmod.apply_overrides(data, args.overrides)
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise cfgmod.ConfigError(f"{name}: must be a mapping")
    for key, value in extra.items():
        if value is not None:
            section[key] = value
    data[name] = section
    return data


def cmd_ingest(args) -> int:
    from kgscale.ingest import IngestConfig, run_ingest, summary
    from kgscale.ray_session import RayConfig

    data = _section(
        args, "ingest", {"source": args.source, "out": args.out, "strict": args.strict or None, "overwrite": args.overwrite or None}
    )
    unknown = set(data) - {"ingest", "ray"}
    if unknown:
        raise cfgmod.ConfigError(f"{', '.join(sorted(unknown))}: unknown section(s) for `kgscale ingest` (expected ingest, ray)")
    cfg = cfgmod.build(IngestConfig, data["ingest"], source=f"{args.config or 'command line'} [ingest]")
    ray_cfg = cfgmod.build(RayConfig, data.get("ray", {}), source=f"{args.config or 'command line'} [ray]")
    manifest = run_ingest(cfg, ray_cfg)
    print(summary(manifest, cfg.out))
    return 0


def cmd_info(args) -> int:
    from kgscale.info import format_info, snapshot_info

    info = snapshot_info(args.dir)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgscale", description="Align language models with knowledge graphs on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="read a knowledge graph into a snapshot directory")
    ing.add_argument("source", help="dataset:NAME or a benchmark directory")
    ing.add_argument("--out", required=True, help="snapshot directory to write")
    ing.add_argument("--strict", action="store_true", help="the first rejected row is fatal")
    ing.add_argument("--overwrite", action="store_true", help="replace an existing snapshot")
    ing.add_argument("--config", help="YAML config with `ingest:` and `ray:` sections")
    ing.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. ingest.read_task_mb=4")
    ing.set_defaults(func=cmd_ingest)

    inf = sub.add_parser("info", help="show what a snapshot holds")
    inf.add_argument("dir", help="snapshot directory")
    inf.add_argument("--json", action="store_true", help="print JSON")
    inf.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kgscale.kg.download import DownloadError
    from kgscale.kg.registry import DatasetError
    from kgscale.kg.rejects import RejectedInputError
    from kgscale.kg.snapshot import SnapshotError
    from kgscale.kg.sources import SourceError
    from kgscale.output import OutputExistsError

    try:
        return args.func(args)
    except (cfgmod.ConfigError, SourceError, DatasetError, DownloadError, RejectedInputError, SnapshotError, OutputExistsError) as exc:
        print(f"kgscale {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
