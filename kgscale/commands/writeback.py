"""``kgscale writeback PRED_DIR``: predictions into an RDF file or a SPARQL store (dry-run unless --apply)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("writeback", help="write `kgscale predict` output back as RDF or into a SPARQL store")
    p.add_argument("pred_dir", metavar="PRED_DIR", help="a directory `kgscale predict` wrote")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--rdf", metavar="FILE", help="an N-Triples file (valid Turtle too)")
    to.add_argument("--sparql-update", metavar="URL", help="a SPARQL 1.1 update endpoint; reified statements")
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
    from pathlib import Path

    from kgscale.cli import UserError
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
    where = args.rdf or args.sparql_update
    if not args.apply:
        shown = wb.rdf12_lines(new[:1], naming, model) if args.rdf and args.style == "rdf12" else \
            [line for g in wb.reified_lines(new[:1], naming, model) for line in g]
        print(f"kgscale writeback: dry run: would write {len(new):,} predicted triples (of {len(rows):,} "
              f"predictions: known triples left out, a triple found both ways once) to {where}; the first statements:")
        print("\n".join("  " + line for line in shown))
        print("kgscale writeback: nothing was written; add --apply to write.")
        return 0
    if args.rdf:
        n = wb.write_rdf(new, Path(args.rdf), naming, model, args.style)
        print(f"kgscale writeback: {len(new):,} predictions as {n:,} triples ({args.style}) in {args.rdf}.")
        return 0
    password = secret_from_env(args.password_env, what="--password-env") if args.password_env else None
    try:
        done = wb.sparql_update(new, args.sparql_update, naming, model, args.batch_size, args.user, password)
    except wb.WriteBackError as exc:
        print(f"kgscale writeback: error: {exc}", file=__import__("sys").stderr)
        return 1
    print(f"kgscale writeback: {done:,} predictions inserted into {args.sparql_update} as reified statements "
          f"(batches of {args.batch_size}).")
    return 0
