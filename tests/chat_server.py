"""A small OpenAI-compatible server for tests: real HTTP on 127.0.0.1.

It answers ``POST /v1/chat/completions`` with a rationale built from the
prompt, and misbehaves on request, by markers in the user message:

- ``[[500x2]]``: HTTP 500 to the first two requests with that prompt, then 200;
- ``[[always500]]``: HTTP 500 every time;
- ``[[slow]]``: answers after ``slow_s`` seconds (past a client's timeout);
- ``[[noentity]]``: a 200 whose rationale names no entity;
- ``[[400]]``: HTTP 400 (a request the endpoint refuses).

It records every request (path, headers, body) so tests can count retries.
"""
from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, slow_s: float = 2.0) -> None:
        self.slow_s = slow_s
        self.requests: list[dict] = []
        self.seen = collections.Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, {"error": "bad json"})
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                user = next((m["content"] for m in body.get("messages", []) if m["role"] == "user"), "")
                with server.lock:
                    server.seen[user] += 1
                    count = server.seen[user]
                if "[[always500]]" in user or ("[[500x2]]" in user and count <= 2):
                    return self._send(500, {"error": "internal error"})
                if "[[400]]" in user:
                    return self._send(400, {"error": "bad request"})
                if "[[slow]]" in user:
                    time.sleep(server.slow_s)
                if "[[noentity]]" in user:
                    content = "Because it just is."
                else:
                    facts = [line[2:] for line in user.splitlines() if line.startswith("- ")]
                    content = f"The facts say {facts[0] if facts else 'nothing'}, so that is why."
                self._send(200, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                              "finish_reason": "stop"}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, marker: str) -> int:
        with self.lock:
            return sum(n for prompt, n in self.seen.items() if marker in prompt)
