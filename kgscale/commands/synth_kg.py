"""``kgscale synth-kg --triples N --out DIR``"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("synth-kg", help="write a synthetic knowledge graph (power-law degrees, Zipf relations, "
                       "names, descriptions, splits) as a benchmark directory and N-Triples")
    p.add_argument("--out", required=True, help="directory to write (replaced if it exists)")
    p.add_argument("--triples", type=int, default=100_000, help="number of distinct triples (default 100000)")
    p.add_argument("--entities", type=int, default=None, help="number of entities (default triples / 4.5)")
    p.add_argument("--relations", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--entity-alpha", type=float, default=0.8, help="Zipf exponent of the entity degree law")
    p.add_argument("--relation-alpha", type=float, default=1.1, help="Zipf exponent of the relation frequencies")
    p.add_argument("--valid-fraction", type=float, default=0.01)
    p.add_argument("--test-fraction", type=float, default=0.01)
    p.add_argument("--formats", default="benchmark,nt,nt_gz",
                   help="comma-separated: benchmark (train.txt ...), nt (nt/*.nt), nt_gz (nt_gz/*.nt.gz)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from kgscale.errors import UserError
    from kgscale.kg.synthetic import SyntheticKGConfig, write_synthetic_kg

    cfg = SyntheticKGConfig(triples=args.triples, entities=args.entities, relations=args.relations, seed=args.seed,
                            entity_alpha=args.entity_alpha, relation_alpha=args.relation_alpha,
                            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction)
    t0 = time.perf_counter()
    try:
        info = write_synthetic_kg(cfg, args.out, formats=[f.strip() for f in args.formats.split(",") if f.strip()])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    t = info["counts"]["triples"]
    print(f"Wrote a synthetic KG to {args.out} ({', '.join(info['formats'])}): {info['counts']['entities']:,} entities, "
          f"{info['counts']['relations']:,} relations, {t['train']:,} / {t['valid']:,} / {t['test']:,} "
          f"train / valid / test triples (seed {cfg.seed}); {time.perf_counter() - t0:.1f} s. "
          f"Read it with `kgscale ingest {args.out}`, or the N-Triples with `kgscale ingest {args.out}/nt "
          """'ingest.rdf.splits.files={valid: ["valid.nt*"], test: ["test.nt*"]}'`.""")
    return 0
