"""The ``kgscale`` command line.

Each subcommand (one module in :mod:`kgscale.commands`) reads an optional
YAML config (``--config FILE``), applies ``key=value`` overrides given after
its arguments, validates the result into its typed config, runs, and ends
with a one-paragraph summary. A problem with the config or the input exits
with status 2 and a message that names it, never a traceback: every such
error derives from :class:`kgscale.errors.UserError` (re-exported here), and
:func:`main` catches that base alone.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from kgscale.errors import UserError

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]

# Subcommand modules, in the order `kgscale --help` lists them.
COMMANDS = ("ingest", "synth-kg", "info", "questions", "paths", "rationales", "train", "eval", "predict", "writeback", "serve", "run", "report")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgscale", description="Align language models with knowledge graphs on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"kgscale.commands.{name.replace('-', '_')}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after options (`ingest SRC --out D k=v` and
    # `ingest SRC k=v --out D`); argparse leaves the later ones unparsed.
    args, rest = parser.parse_known_args(argv)
    stray = [a for a in rest if a.startswith("-") or "=" not in a]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        if not hasattr(args, "overrides"):
            parser.error(f"`kgscale {args.command}` takes no key=value overrides: {' '.join(rest)}")
        args.overrides = list(args.overrides or []) + rest
    try:
        return args.func(args)
    except UserError as exc:
        print(f"kgscale {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
