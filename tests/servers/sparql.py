"""A real SPARQL 1.1 server for tests (``oxigraph serve-read-only`` from the
PyPI ``oxigraph`` package) on 127.0.0.1, and a proxy in front of it that
answers HTTP 500 to chosen queries, to test retries and failures."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.servers.process import free_port, stop, wait_until_listening


def oxigraph_binary() -> str | None:
    here = Path(sys.executable).parent / "oxigraph"
    return str(here) if here.is_file() else shutil.which("oxigraph")


class OxigraphServer:
    """``oxigraph serve-read-only --location STORE`` (``writable``: ``oxigraph
    serve``, with its /update endpoint) until closed."""

    def __init__(self, store: str | os.PathLike, writable: bool = False) -> None:
        binary = oxigraph_binary()
        if binary is None:
            raise RuntimeError("the oxigraph server binary is missing: pip install the dev extra (oxigraph)")
        self.port = free_port()
        mode = "serve" if writable else "serve-read-only"
        self.proc = subprocess.Popen([binary, mode, "--location", str(store), "--bind", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_listening(self.proc, self.port, "oxigraph", 30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/query"

    @property
    def update_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/update"

    def close(self) -> None:
        stop(self.proc)


class FailingProxy:
    """Forwards SPARQL requests to ``upstream``; a request whose (url-encoded)
    body contains ``trigger`` is answered with HTTP 500 the first ``times``
    times (``times=None``: always)."""

    def __init__(self, upstream: str, trigger: str, times: int | None) -> None:
        self.upstream, self.trigger, self.times = upstream, trigger, times
        self.failed = 0
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.requests += 1
                if proxy.trigger in body.decode() and (proxy.times is None or proxy.failed < proxy.times):
                    proxy.failed += 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"scripted failure")
                    return
                req = urllib.request.Request(proxy.upstream, data=body, method="POST",
                                             headers={k: v for k, v in self.headers.items() if k.lower() in ("accept", "content-type")})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    data = resp.read()
                    self.send_response(resp.status)
                    self.send_header("Content-Type", resp.headers.get("Content-Type", ""))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/query"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
