"""Assemble the Serve application from a :class:`ServeConfig` and run it.

Two deployments: ``Model`` (the model replicas: replicas or autoscaling,
CPU/GPU share, bounded queue) and ``Api`` (the HTTP ingress, no CPU
reserved: it parses and waits). Serve's HTTP proxy binds to
``http.host``/``http.port`` (127.0.0.1 unless told otherwise).
"""
from __future__ import annotations

import socket

from ray import serve

from kgscale.serve.auth import token_digest_from_env
from kgscale.serve.config import ServeConfig


# Ray Serve settings that cut per-request overhead (a subset of Ray's own
# RAY_SERVE_THROUGHPUT_OPTIMIZED, without its direct ingress, which would open
# ports on the replicas): user code and the handle's router run on the
# replica's own event loop instead of one more thread each, and request logs
# go to Serve's log files only. Read by Ray's processes when they start, so
# they apply to a Ray started by `kgscale serve`, not to a cluster joined.
LEAN_SERVE_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                  "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
                  "RAY_SERVE_LOG_TO_STDERR": "0"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def model_options(cfg: ServeConfig) -> dict:
    """Serve options of the model deployment, from ``cfg.deployment``."""
    d = cfg.deployment
    opts = {"ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
            "max_ongoing_requests": d.max_ongoing_requests, "max_queued_requests": d.max_queued_requests,
            # building an entity index on CPU can take minutes
            "health_check_timeout_s": 120}
    if d.autoscaling is not None:
        a = d.autoscaling
        opts["autoscaling_config"] = {
            "min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
            "initial_replicas": max(1, a.min_replicas),
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s, "downscale_delay_s": a.downscale_delay_s}
    else:
        opts["num_replicas"] = d.replicas
    return opts


def ingress_options(cfg: ServeConfig) -> dict:
    d = cfg.deployment
    return {"num_replicas": d.ingress_replicas, "ray_actor_options": {"num_cpus": 0},
            "max_ongoing_requests": d.ingress_max_ongoing_requests,
            "max_queued_requests": d.ingress_max_queued_requests}


def build_app(cfg: ServeConfig, token_digest: str | None = None):
    from kgscale.serve.ingress import Api
    from kgscale.serve.model_deployment import ModelServer

    data = cfg.model_dump(mode="json")
    model = ModelServer.options(name="Model", **model_options(cfg)).bind(data)
    return Api.options(name="Api", **ingress_options(cfg)).bind(data, model, token_digest)


def check_exposure(cfg: ServeConfig) -> None:
    """Binding an address other machines reach, with no token, serves the
    model to anyone on the network: refused unless ``http.allow_public``."""
    from kgscale.config import ConfigError
    from kgscale.serve.http_guard import is_loopback

    if is_loopback(cfg.http.host) or token_digest_from_env(cfg.api_token_env) is not None:
        return
    if not cfg.http.allow_public:
        raise ConfigError(f"serve.http.host {cfg.http.host} is reachable from other machines and "
                          f"${cfg.api_token_env} is not set, so anyone could use this server: set the token, "
                          f"or pass --allow-public (serve.http.allow_public=true) to serve without one")
    import logging

    logging.getLogger("kgscale.serve").warning("serving %s without a token (allow_public)", cfg.http.host)


def preflight(cfg: ServeConfig):
    """Fail on the driver, with a message, before anything is deployed: a
    missing model or snapshot, or an index of another model, would otherwise
    make replicas fail to start again and again. Returns the model's info."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.serve.entity_index import check_index_dir
    from kgscale.serve.loading import describe

    check_exposure(cfg)
    info = describe(cfg.model)
    if cfg.kg is not None:
        Snapshot(cfg.kg.snapshot)
        check_index_dir(cfg, info.kind)
    return info


def start(cfg: ServeConfig) -> str:
    """Deploy ``cfg`` on the connected Ray cluster (Serve started on its
    first use with ``cfg.http``); returns the base URL once every replica is
    up (entity index built)."""
    preflight(cfg)
    port = cfg.http.port or free_port(cfg.http.host)
    serve.start(http_options={"host": cfg.http.host, "port": port, "request_timeout_s": cfg.http.request_timeout_s})
    digest = token_digest_from_env(cfg.api_token_env)
    serve.run(build_app(cfg, digest), name=cfg.app_name, route_prefix=cfg.http.route_prefix, blocking=False)
    host, actual = http_address()
    return f"http://{host}:{actual}{cfg.http.route_prefix.rstrip('/')}"


def http_address() -> tuple[str, int]:
    """Where Serve's proxy really listens (an earlier serve.start may have set it)."""
    from ray.serve.context import _get_global_client

    opts = _get_global_client().http_config
    return opts.host, opts.port
