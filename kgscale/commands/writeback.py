"""``kgscale writeback PRED_DIR``: predictions into an RDF file or a SPARQL store (dry-run unless --apply)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("writeback", help="write `kgscale predict` output back as RDF or into a SPARQL store")
    p.add_argument("pred_dir", metavar="PRED_DIR", help="a directory `kgscale predict` wrote")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--rdf", metavar="FILE", help="an N-Triples file (valid Turtle too)")
    to.add_argument("--sparql-update", metavar="URL", help="a SPARQL 1.1 update endpoint; reified statements")
    to.add_argument("--neo4j", metavar="URI", help="a Neo4j server (bolt:// or neo4j://): MERGEd relationships")
    p.add_argument("--relationship-type", default="PREDICTED", help="Neo4j: the type of the written relationships")
    p.add_argument("--database", default="neo4j", help="Neo4j: the database")
    p.add_argument("--key-property", help="Neo4j: node property holding the entity key (default: keys are node:<id>)")
    p.add_argument("--label", help="Neo4j: the label of the entity nodes")
    p.add_argument("--neo4j-user", default="neo4j", help="Neo4j: the user")
    p.add_argument("--neo4j-password-env", default="NEO4J_PASSWORD", help="Neo4j: environment variable of the password")
    p.add_argument("--style", choices=["rdf12", "reified"], default="rdf12",
                   help="RDF files: RDF 1.2 triple terms (default) or RDF 1.1 reified statements")
    p.add_argument("--apply", action="store_true", help="write (default: a dry run that shows what would be written)")
    p.add_argument("--entity-base", default="urn:kgscale:entity:", help="IRI prefix for keys that are not IRIs")
    p.add_argument("--relation-base", default="urn:kgscale:relation:", help="IRI prefix for relation keys")
    p.add_argument("--model-id", help="the model's id in the statements (default: model directory @ creation time)")
    p.add_argument("--batch-size", type=int, default=500, help="predictions per SPARQL INSERT DATA")
    p.add_argument("--user", help="HTTP basic user for the SPARQL endpoint")
    p.add_argument("--password-env", help="environment variable holding its password")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from kgscale.errors import UserError
    from kgscale.complete import writeback as wb
    from kgscale.config import secret_from_env

    try:
        rows, manifest = wb.load(Path(args.pred_dir))
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if args.batch_size < 1:
        raise UserError("--batch-size: must be at least 1")
    new = wb.distinct([r for r in rows if not r["known"]])  # a known triple is in the graph already
    naming = wb.Naming(args.entity_base, args.relation_base)
    model = args.model_id or wb.model_id(manifest)
    where = args.rdf or args.sparql_update or args.neo4j
    neo4j_cfg = None
    if args.neo4j:
        from kgscale.kg.sources.neo4j_source import Neo4jConfig

        neo4j_cfg = Neo4jConfig(database=args.database, user=args.neo4j_user, password_env=args.neo4j_password_env,
                                key_property=args.key_property, node_labels=[args.label] if args.label else [])
    if not args.apply:
        if neo4j_cfg is not None:
            shown = [wb.neo4j_merge_query(neo4j_cfg, args.relationship_type),
                     f"rows: {json.dumps(wb.neo4j_rows(new[:1], model))} ..."]
        elif args.rdf and args.style == "rdf12":
            shown = wb.rdf12_lines(new[:1], naming, model)
        else:
            shown = [line for g in wb.reified_lines(new[:1], naming, model) for line in g]
        print(f"kgscale writeback: dry run: would write {len(new):,} predicted triples (of {len(rows):,} "
              f"predictions: known triples left out, a triple found both ways once) to {where}; the first statements:")
        print("\n".join("  " + line for line in shown))
        print("kgscale writeback: nothing was written; add --apply to write.")
        return 0
    if args.rdf:
        n = wb.write_rdf(new, Path(args.rdf), naming, model, args.style)
        print(f"kgscale writeback: {len(new):,} predictions as {n:,} triples ({args.style}) in {args.rdf}.")
        return 0
    try:
        if neo4j_cfg is not None:
            done = wb.neo4j_merge(new, args.neo4j, neo4j_cfg, args.relationship_type, model, args.batch_size)
            said = f"{done:,} of {len(new):,} predictions MERGEd into {args.neo4j} as :{args.relationship_type} " \
                   f"relationships"
        else:
            password = secret_from_env(args.password_env, what="--password-env") if args.password_env else None
            done = wb.sparql_update(new, args.sparql_update, naming, model, args.batch_size, args.user, password)
            said = f"{done:,} predictions inserted into {args.sparql_update} as reified statements"
    except wb.WriteBackError as exc:
        print(f"kgscale writeback: error: {exc}", file=sys.stderr)
        return 1
    print(f"kgscale writeback: {said} (batches of {args.batch_size}).")
    return 0
