"""``kgscale run CONFIG``: every stage, each skipped when its output is current."""
from __future__ import annotations

from kgscale.commands.common import add_config_args


def register(sub) -> None:
    p = sub.add_parser("run", help="run the whole pipeline from one config (ingest ... evaluation, optionally serving)")
    p.add_argument("config_path", metavar="CONFIG", help="pipeline YAML, e.g. jobs/quickstart.yaml")
    p.add_argument("--serve", action="store_true", help="deploy the `serve` section at the end and keep serving")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="run STAGE even if its output is current")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show Ray's and the libraries' logs on the console too (by default they go to RUN_DIR/logs/)")
    add_config_args(p, "run.dir=runs/try2 train.kalm.train.max_steps=20")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import time

    import yaml

    from kgscale import config as cfgmod
    from kgscale.pipeline.report import (comparison_text, headline, kgc_comparison, plot_training, qa_comparison,
                                         qa_comparison_text, table)
    from kgscale.pipeline.run import Pipeline

    data = cfgmod.read_yaml(args.config_path)
    if args.config:
        raise cfgmod.ConfigError("kgscale run takes its config as CONFIG; --config is not used here")
    cfgmod.apply_overrides(data, list(args.overrides or []))
    run_sec = data.setdefault("run", {})
    if args.serve:
        run_sec["serve"] = True
    if args.force:
        run_sec["force"] = sorted(set(run_sec.get("force", []) + args.force))
    t0 = time.perf_counter()
    from kgscale.ray_session import probe_address

    if (data.get("ray") or {}).get("address"):
        probe_address(str(data["ray"]["address"]))  # before resolving datasets or building anything
    pipeline = Pipeline(data, source=args.config_path)  # every section is validated before anything runs
    from kgscale.console import quiet, quiet_workers
    from kgscale.ray_session import ensure_ray

    pipeline.dir.mkdir(parents=True, exist_ok=True)
    (pipeline.dir / "run_config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    logs = quiet(pipeline.dir / "logs", verbose=args.verbose)  # before Ray starts: its start-up logs too
    if logs is not None:
        print(f"kgscale run: Ray's and the libraries' logs go to {logs}/ (-v shows them here too)", flush=True)
    ensure_ray(pipeline.ray)
    if logs is not None:
        quiet_workers(logs)
    results = pipeline.execute()
    summary = table(results)
    curves = plot_training(results, pipeline.dir / "curves")
    summary_json = pipeline.dir / "summary.json"
    cmp, qa_cmp = kgc_comparison(results), qa_comparison(results)
    summary_json.write_text(json.dumps(
        {"stages": [{"stage": r.name, "skipped": r.skipped, "seconds": round(r.seconds, 2), "out": str(r.out),
                     "fingerprint": r.fingerprint, "result": headline(r)} for r in results],
         "kgc": cmp, "qa": qa_cmp}, indent=2) + "\n")
    from kgscale.pipeline.report_html import write_report

    report = write_report(pipeline.dir)
    for path in (summary_json, report, pipeline.dir / "run_config.yaml", *curves,
                 *(p.with_suffix(".csv") for p in curves)):
        pipeline.storage.push_file(path)
    ran = sum(not r.skipped for r in results)
    print(summary)
    if cmp:
        print(comparison_text(cmp))
    if qa_cmp:
        print(qa_comparison_text(qa_cmp))
    where = f"{pipeline.storage} (working copy {pipeline.dir})" if pipeline.storage.remote else pipeline.dir
    print(f"kgscale run: {len(results)} stages in {where} ({ran} ran, {len(results) - ran} current) in "
          f"{time.perf_counter() - t0:.0f} s" + (f"; training curves: {', '.join(map(str, curves))}" if curves else "")
          + f"; report: {report}.")
    if pipeline.run.serve:
        url = pipeline.serve()
        print(f"kgscale run: serving at {url}; Ctrl-C stops it.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            from ray import serve

            serve.shutdown()
    return 0
