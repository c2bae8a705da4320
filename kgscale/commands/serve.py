"""``kgscale serve [CONFIG] [key=value ...]``"""
from __future__ import annotations

from kgscale.commands.common import build_section, config_sections


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over HTTP (OpenAI-compatible, plus KG completion) on Ray Serve")
    p.add_argument("config", nargs="?", help="YAML config with a `serve` section (and optionally `ray`)")
    p.add_argument("--model", help="model to serve (a trained directory, a hub id, a packaged or tiny model)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--snapshot", help="KG snapshot for /v1/kg/complete")
    p.add_argument("--no-block", action="store_true", help="deploy and return (the app keeps running in Ray)")
    p.add_argument("--allow-public", action="store_true",
                   help="allow a non-loopback --host without a token (anyone who reaches it can use it)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. serve.batching.max_batch_size=64")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    import time

    from kgscale.ray_session import RayConfig, ensure_ray
    from kgscale.serve.config import ServeConfig
    from kgscale.serve.server import start

    if args.config and "=" in args.config and not os.path.isfile(args.config):
        # no config file: argparse took the first key=value for it
        args.overrides, args.config = [args.config, *(args.overrides or [])], None
    flags = {"model": args.model}
    data = config_sections(args, {"serve", "ray"}, {"serve": flags})
    section = data.setdefault("serve", {})
    if args.allow_public:
        section.setdefault("http", {})["allow_public"] = True
    if args.host or args.port is not None:
        section.setdefault("http", {})
        if args.host:
            section["http"]["host"] = args.host
        if args.port is not None:
            section["http"]["port"] = args.port
    if args.snapshot:
        section.setdefault("kg", {})
        section["kg"]["snapshot"] = args.snapshot
    cfg = build_section(ServeConfig, data, "serve", args)
    ray_cfg = build_section(RayConfig, data, "ray", args)
    from kgscale.serve.server import preflight

    info = preflight(cfg)  # a missing model or snapshot fails here, before Ray starts
    if not (ray_cfg.address or os.environ.get("RAY_ADDRESS")):
        from kgscale.serve.server import LEAN_SERVE_ENV

        for k, v in LEAN_SERVE_ENV.items():  # the local Ray about to start inherits them
            os.environ.setdefault(k, v)
    ensure_ray(ray_cfg)
    t0 = time.perf_counter()
    url = start(cfg)
    auth = f"bearer token from ${cfg.api_token_env}" if _env_set(cfg.api_token_env) else "no authentication"
    kg = f", KG completion over {cfg.kg.snapshot}" if cfg.kg else ""
    print(f"kgscale serve: {cfg.model_name} ({info.kind}, context {info.context_length}) is up at {url} after "
          f"{time.perf_counter() - t0:.0f} s: POST /v1/embeddings, /v1/completions, /v1/chat/completions"
          f"{', /v1/kg/complete' if cfg.kg else ''}; GET /v1/models, /health; {auth}{kg}; batches of up to "
          f"{cfg.batching.max_batch_size}, {_replicas(cfg)}.", flush=True)
    if args.no_block:
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
        print("kgscale serve: stopped", flush=True)
    return 0


def _env_set(var: str) -> bool:
    import os

    return bool(os.environ.get(var))


def _replicas(cfg) -> str:
    a = cfg.deployment.autoscaling
    if a is None:
        return f"{cfg.deployment.replicas} replica(s)"
    return f"{a.min_replicas}-{a.max_replicas} replicas (target {a.target_ongoing_requests:g} ongoing each)"
