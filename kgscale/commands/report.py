"""``kgscale report RUN_DIR``: rebuild a run's ``report.html`` from its files."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild RUN_DIR/report.html, the run in one self-contained page")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory `kgscale run` wrote, e.g. runs/quickstart")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from kgscale.errors import UserError
    from kgscale.pipeline.report_html import write_report

    try:
        out = write_report(Path(args.run_dir))
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    print(f"kgscale report: {out} (open it in a browser; it needs no network)")
    return 0
