"""Load test of served embeddings or completions: dynamic batching against one request at a time.

Deploys the same model twice on a local Ray Serve, both bound to 127.0.0.1:
``batched`` (``batching.max_batch_size`` = --batch) and ``single``
(max_batch_size 1: every request is its own forward pass or ``generate``,
the way a plain model server without batching works). Both let a replica hold
the same number of requests, so the one-at-a-time replica never waits for the
next one: batch size is the only difference. Then, in alternating rounds, a client
on loopback keeps --concurrency requests in flight for --duration seconds
(never more than --max-requests requests a round) against each, and reports
requests/s, p50 and p99 latency and errors; medians over the rounds and the
throughput ratio, then a JSON line.

    python bench/serve_load.py --model all-minilm-l6-v2 --concurrency 32 --duration 15 --rounds 3
    python bench/serve_load.py --model smollm2-135m-instruct --endpoint completions --max-tokens 16

Only loopback is targeted: the apps are started here, on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time

WORDS = ("the a of dog cat animal capital country europe river mountain small large warm blooded vertebrate seat "
         "back solid product living organism city water tree bird song old new green house road").split()


def make_texts(n: int, lo: int, hi: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


async def load(url: str, payloads: list[dict], concurrency: int, duration: float, max_requests: int) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    deadline = time.perf_counter() + duration

    async def worker(session):
        nonlocal issued
        while time.perf_counter() < deadline and issued < max_requests:
            body = payloads[issued % len(payloads)]
            issued += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body) as r:
                    await r.read()
                    if r.status != 200:
                        errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                        continue
            except Exception as exc:  # a refused or broken connection is an error, not a crash
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: float("nan"))
    return {"requests": issued, "ok": len(lat), "errors": sum(errors.values()), "error_kinds": errors,
            "seconds": round(wall, 2), "rps": round(len(lat) / wall, 2), "p50_ms": round(q(0.50), 1),
            "p99_ms": round(q(0.99), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="all-minilm-l6-v2")
    p.add_argument("--endpoint", choices=("embeddings", "completions"), default="embeddings")
    p.add_argument("--max-tokens", type=int, default=16, help="completion tokens a request (completions)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=15.0, help="seconds a round lasts")
    p.add_argument("--max-requests", type=int, default=5000, help="at most this many requests a round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=32, help="max_batch_size of the batched deployment")
    p.add_argument("--wait-ms", type=float, default=5.0, help="batch_wait_timeout of the batched deployment (embeddings)")
    p.add_argument("--generation-wait-ms", type=float, default=None,
                   help="generation_wait_timeout of the batched deployment (default: the config's)")
    p.add_argument("--words", default="3,12", help="words per input text: min,max")
    # one thread: on a shared machine a second OpenMP thread that is descheduled
    # stalls every parallel op (measured here: 20x slower single passes)
    p.add_argument("--threads", type=int, default=1, help="torch threads a replica")
    p.add_argument("--stock-serve", action="store_true",
                   help="Serve's default threading (user code and router on their own event loops)")
    args = p.parse_args()

    import ray
    from ray import serve

    from kgscale.serve.config import ServeConfig
    from kgscale.serve.server import start

    from kgscale.serve.server import LEAN_SERVE_ENV

    if not args.stock_serve:
        for k, v in LEAN_SERVE_ENV.items():
            os.environ.setdefault(k, v)  # before Ray starts: workers inherit it
    cores = os.cpu_count() or 2
    threads = args.threads
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    os.environ.pop("KGSCALE_API_TOKEN", None)  # no auth on a private loopback bench
    base = {"model": args.model, "http": {"host": "127.0.0.1", "port": 0},
            # both apps are deployed at once; only the one under test is busy. Both
            # let a replica hold the same number of requests, so that the one-at-a-time
            # replica also always has the next request at hand (no round trip between
            # two forward passes): the only difference is the batch size.
            "deployment": {"num_cpus": cores / 2, "torch_threads": threads,
                           "max_ongoing_requests": max(2 * args.batch, args.concurrency),
                           "max_queued_requests": 4 * args.concurrency},
            "limits": {"max_inputs": 8}}
    urls = {}
    t0 = time.perf_counter()
    for name, batch in (("batched", args.batch), ("single", 1)):
        cfg = ServeConfig.model_validate({**base, "app_name": name, "http": {**base["http"], "route_prefix": f"/{name}"},
                                          "batching": {"max_batch_size": batch,
                                                       "batch_wait_timeout_s": args.wait_ms / 1000 if batch > 1 else 0,
                                                       **({"generation_wait_timeout_s": 0} if batch == 1 else
                                                          {"generation_wait_timeout_s": args.generation_wait_ms / 1000}
                                                          if args.generation_wait_ms is not None else {})}})
        urls[name] = start(cfg) + f"/v1/{args.endpoint}"
        assert urls[name].startswith("http://127.0.0.1:"), urls[name]
    print(f"deployed {args.model} twice in {time.perf_counter() - t0:.0f} s; {cores} cores, {threads} torch threads "
          f"a replica", flush=True)
    lo, hi = (int(x) for x in args.words.split(","))
    model_name = ServeConfig.model_validate(base).model_name
    if args.endpoint == "embeddings":
        payloads = [{"model": model_name, "input": t, "encoding_format": "float"} for t in make_texts(512, lo, hi)]
    else:  # greedy, so that every request asks for the same work in both modes
        payloads = [{"model": model_name, "prompt": t, "max_tokens": args.max_tokens, "temperature": 0}
                    for t in make_texts(512, lo, hi)]

    runs: dict[str, list[dict]] = {"batched": [], "single": []}
    try:
        for name in urls:
            asyncio.run(load(urls[name], payloads, args.concurrency, args.warmup, args.max_requests))
        for r in range(args.rounds):
            # alternate the order so that drift of a shared machine hits both alike
            for name in (("batched", "single") if r % 2 == 0 else ("single", "batched")):
                res = asyncio.run(load(urls[name], payloads, args.concurrency, args.duration, args.max_requests))
                runs[name].append(res)
                print(f"round {r + 1} {name:8s} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:7.1f} ms  "
                      f"p99 {res['p99_ms']:7.1f} ms  ok {res['ok']:5d}  errors {res['errors']} {res['error_kinds'] or ''}",
                      flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    def med(name, key):
        return statistics.median(x[key] for x in runs[name])

    summary = {name: {k: med(name, k) for k in ("rps", "p50_ms", "p99_ms")} | {"errors": sum(x["errors"] for x in runs[name]),
                                                                            "requests": sum(x["requests"] for x in runs[name])}
               for name in runs}
    ratio = summary["batched"]["rps"] / summary["single"]["rps"] if summary["single"]["rps"] else float("inf")
    ratios = [b["rps"] / s["rps"] for b, s in zip(runs["batched"], runs["single"]) if s["rps"]]
    print(f"median over {args.rounds} rounds at concurrency {args.concurrency}: batched {summary['batched']['rps']:.1f} "
          f"req/s (p50 {summary['batched']['p50_ms']:.0f} ms, p99 {summary['batched']['p99_ms']:.0f} ms), one at a time "
          f"{summary['single']['rps']:.1f} req/s (p50 {summary['single']['p50_ms']:.0f} ms, p99 "
          f"{summary['single']['p99_ms']:.0f} ms): {ratio:.1f}x throughput; errors {summary['batched']['errors']} / "
          f"{summary['single']['errors']}", flush=True)
    print(json.dumps({"bench": "serve_load", "endpoint": f"/v1/{args.endpoint}", "model": args.model,
                      "max_tokens": args.max_tokens if args.endpoint == "completions" else None,
                      "concurrency": args.concurrency, "duration_s": args.duration, "rounds": args.rounds,
                      "batch": args.batch, "words": [lo, hi], "cores": cores, "batched": summary["batched"],
                      "single": summary["single"], "throughput_ratio": round(ratio, 2),
                      "round_ratios": [round(x, 2) for x in ratios]}))


if __name__ == "__main__":
    main()
