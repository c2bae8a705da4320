"""``kgscale ingest SOURCE --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_stage_args, run_stage_command


def register(sub) -> None:
    p = sub.add_parser("ingest", help="read a knowledge graph into a snapshot directory")
    p.add_argument("source", help="dataset:NAME, a benchmark directory, RDF files (a file, directory or glob), "
                   "oxigraph:PATH, a SPARQL endpoint URL, or a neo4j:// or bolt:// URI (see docs/sources.md)")
    add_stage_args(p, "snapshot directory to write", "the first rejected row is fatal", "ingest.read_task_mb=4")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.ingest import IngestConfig, run_ingest, summary

    return run_stage_command(args, "ingest", IngestConfig, run_ingest, summary, {"source": args.source})
