"""``kgscale ingest SOURCE --out DIR``"""
from __future__ import annotations

from kgscale.commands.common import add_config_args, build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("ingest", help="read a knowledge graph into a snapshot directory")
    p.add_argument("source", help="dataset:NAME, a benchmark directory, RDF files (a file, directory or glob), "
                   "oxigraph:PATH, a SPARQL endpoint URL, or a neo4j:// or bolt:// URI (see docs/sources.md)")
    p.add_argument("--out", required=True, help="snapshot directory to write")
    p.add_argument("--strict", action="store_true", help="the first rejected row is fatal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing snapshot")
    add_config_args(p, "ingest.read_task_mb=4")
    p.set_defaults(func=run)


def run(args) -> int:
    from kgscale.ingest import IngestConfig, run_ingest, summary
    from kgscale.ray_session import RayConfig

    flags = {"source": args.source, "out": args.out, "strict": args.strict or None, "overwrite": args.overwrite or None}
    data = config_sections(args, {"ingest", "ray"}, {"ingest": flags})
    cfg = build_section(IngestConfig, data, "ingest", args)
    ray_cfg = build_section(RayConfig, data, "ray", args)
    manifest = run_ingest(cfg, ray_cfg)
    print(summary(manifest, cfg.out))
    return 0
