"""``kgscale info DIR``"""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="show what a snapshot holds")
    p.add_argument("dir", help="snapshot directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.info import format_info, snapshot_info

    info = snapshot_info(args.dir)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
