"""Standard clients against ``kgscale serve``: the official ``openai`` client
(embeddings, chat, streamed chat) and curl (KG completion), timed.

Starts ``kgscale serve`` as a user would (a subprocess, bearer token from
KGSCALE_API_TOKEN, bound to 127.0.0.1), waits for it, calls it, stops it, and
prints what came back and a JSON line.

    python bench/serve_clients.py --model smollm2-135m-instruct --snapshot SNAPSHOT --head dog --relation _hypernym
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--snapshot", required=True)
    p.add_argument("--head", required=True, help="entity key or name for the KG completion call")
    p.add_argument("--relation", required=True)
    p.add_argument("--index-dir", default=None)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("overrides", nargs="*", help="extra `kgscale serve` overrides (serve.x=y)")
    args = p.parse_args()

    token = secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, "KGSCALE_API_TOKEN": token}
    cmd = [sys.executable, "-m", "kgscale.cli", "serve", "--model", args.model, "--snapshot", args.snapshot,
           "--port", str(port), *args.overrides]
    if args.index_dir:
        cmd.append(f"serve.kg.index_dir={args.index_dir}")
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    for line in server.stdout:
        if "is up at" in line:
            print(line.strip(), flush=True)
            url = re.search(r"is up at (\S+)", line).group(1)
            break
    if url is None:
        sys.exit(f"kgscale serve exited with {server.wait()} before it was up")
    startup = time.perf_counter() - t0
    out: dict = {"model": args.model, "startup_s": round(startup, 1)}
    try:
        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=300)
        t = time.perf_counter()
        emb = client.embeddings.create(model=args.model, input=["a domesticated canine", "the capital of France"])
        out["embeddings_s"] = round(time.perf_counter() - t, 3)
        v = emb.data
        cos = sum(a * b for a, b in zip(v[0].embedding, v[1].embedding))
        print(f"openai embeddings: {len(v)} vectors of {len(v[0].embedding)} dims, cosine {cos:.3f}, "
              f"usage {emb.usage.prompt_tokens} tokens ({out['embeddings_s']} s)")
        msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
        t = time.perf_counter()
        chat = client.chat.completions.create(model=args.model, messages=msgs, max_tokens=args.max_tokens,
                                              temperature=0)
        out["chat_s"] = round(time.perf_counter() - t, 3)
        print(f"openai chat: {chat.choices[0].message.content!r} finish={chat.choices[0].finish_reason} "
              f"usage={chat.usage.prompt_tokens}+{chat.usage.completion_tokens} ({out['chat_s']} s)")
        t = time.perf_counter()
        first = None
        pieces = []
        for chunk in client.chat.completions.create(model=args.model, messages=msgs, max_tokens=args.max_tokens,
                                                    temperature=0, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - t
                pieces.append(chunk.choices[0].delta.content)
        out["stream_first_token_s"] = round(first or float("nan"), 3)
        out["stream_s"] = round(time.perf_counter() - t, 3)
        print(f"openai chat stream: {len(pieces)} chunks, first after {out['stream_first_token_s']} s, "
              f"same text as unstreamed: {''.join(pieces) == chat.choices[0].message.content}")
        body = json.dumps({"head": args.head, "relation": args.relation, "k": 5, "filter_known": True})
        curl = ["curl", "-sS", "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                "-d", body, url + "/v1/kg/complete"]
        t = time.perf_counter()
        res = json.loads(subprocess.run(curl, capture_output=True, text=True, check=True).stdout)
        out["kg_complete_s"] = round(time.perf_counter() - t, 3)
        if "error" in res:
            print("curl /v1/kg/complete:", res)
        else:
            print(f"curl /v1/kg/complete ({out['kg_complete_s']} s): query {res['query']['text']!r}, "
                  f"{res['filtered']} known answers filtered")
            for r in res["results"]:
                print(f"  {r['rank']}. {r['key']} {r['name']!r} score {r['score']:.3f}")
        no_token = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/v1/models"],
                                  capture_output=True, text=True).stdout
        print(f"without the token: HTTP {no_token}")
        out["without_token_status"] = int(no_token)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps({"bench": "serve_clients", **out}))


if __name__ == "__main__":
    main()
