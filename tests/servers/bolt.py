"""A Bolt 5 server for tests: speaks the real protocol to the official Neo4j
driver and replays scripted query results.

It implements the wire format itself (the handshake, PackStream v1, chunked
messages) rather than borrowing the driver's codec, so a test exercises the
driver against an independent implementation. Each connection runs the Bolt
5.4 state machine: HELLO and LOGON (basic auth, checked against the
expected user and password), ROUTE (for ``neo4j://``), BEGIN (which must
ask for a read transaction on the expected database), RUN (whose query text
and parameters must match a scripted :class:`Run`; with ``write``, BEGIN must
open a write transaction and each COMMIT is recorded), PULL (whose ``n`` must
be the expected fetch size), COMMIT, ROLLBACK, RESET and GOODBYE; FAILURE and
IGNORED as a server sends them.

Anything the driver does that the script does not expect is recorded in
``errors`` and answered with a FAILURE; :meth:`BoltServer.verify` fails the
test on any error and on any scripted run that did not happen exactly as
often as expected. A scripted run may drop the connection after some
records, once, to test that the reader retries.
"""
from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

# message tags
HELLO, GOODBYE, RESET, RUN, BEGIN, COMMIT, ROLLBACK, DISCARD, PULL = 0x01, 0x02, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x2F, 0x3F
TELEMETRY, ROUTE, LOGON, LOGOFF = 0x54, 0x66, 0x6A, 0x6B
SUCCESS, RECORD, IGNORED, FAILURE = 0x70, 0x71, 0x7E, 0x7F
NAMES = {HELLO: "HELLO", GOODBYE: "GOODBYE", RESET: "RESET", RUN: "RUN", BEGIN: "BEGIN", COMMIT: "COMMIT",
         ROLLBACK: "ROLLBACK", DISCARD: "DISCARD", PULL: "PULL", TELEMETRY: "TELEMETRY", ROUTE: "ROUTE",
         LOGON: "LOGON", LOGOFF: "LOGOFF"}
MAGIC = b"\x60\x60\xb0\x17"
VERSION = (5, 4)
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"


# --- PackStream v1 -------------------------------------------------------------------------------


class Struct:
    def __init__(self, tag: int, fields: list) -> None:
        self.tag, self.fields = tag, fields


def pack(value: Any) -> bytes:
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if -16 <= value < 128:
            return struct.pack(">b", value)
        for marker, fmt, lo, hi in ((0xC8, ">b", -128, 127), (0xC9, ">h", -(1 << 15), (1 << 15) - 1),
                                    (0xCA, ">i", -(1 << 31), (1 << 31) - 1), (0xCB, ">q", -(1 << 63), (1 << 63) - 1)):
            if lo <= value <= hi:
                return bytes([marker]) + struct.pack(fmt, value)
        raise ValueError("integer out of range")
    if isinstance(value, float):
        return b"\xc1" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _header(len(data), 0x80, 0xD0) + data
    if isinstance(value, (list, tuple)):
        return _header(len(value), 0x90, 0xD4) + b"".join(pack(v) for v in value)
    if isinstance(value, dict):
        return _header(len(value), 0xA0, 0xD8) + b"".join(pack(k) + pack(v) for k, v in value.items())
    if isinstance(value, Struct):
        return bytes([0xB0 | len(value.fields), value.tag]) + b"".join(pack(v) for v in value.fields)
    raise TypeError(f"cannot pack {type(value).__name__}")


def _header(n: int, tiny: int, sized: int) -> bytes:
    if n < 16:
        return bytes([tiny | n])
    for i, fmt in enumerate((">B", ">H", ">I")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([sized + i]) + struct.pack(fmt, n)
    raise ValueError("too long")


class Unpacker:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        if len(out) != n:
            raise ValueError("truncated PackStream value")
        self.pos += n
        return out

    def _u(self, fmt: str) -> int:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def unpack(self) -> Any:
        m = self._take(1)[0]
        hi = m & 0xF0
        if m < 0x80:
            return m
        if m >= 0xF0:
            return m - 0x100
        if hi == 0x80:
            return self._take(m & 0x0F).decode("utf-8")
        if hi == 0x90:
            return [self.unpack() for _ in range(m & 0x0F)]
        if hi == 0xA0:
            return self._map(m & 0x0F)
        if hi == 0xB0:
            tag = self._take(1)[0]
            return Struct(tag, [self.unpack() for _ in range(m & 0x0F)])
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if m in simple:
            return simple[m]
        if m == 0xC1:
            return self._u(">d")
        ints = {0xC8: ">b", 0xC9: ">h", 0xCA: ">i", 0xCB: ">q"}
        if m in ints:
            return self._u(ints[m])
        sizes = {0: ">B", 1: ">H", 2: ">I"}
        if 0xD0 <= m <= 0xD2:
            return self._take(self._u(sizes[m - 0xD0])).decode("utf-8")
        if 0xD4 <= m <= 0xD6:
            return [self.unpack() for _ in range(self._u(sizes[m - 0xD4]))]
        if 0xD8 <= m <= 0xDA:
            return self._map(self._u(sizes[m - 0xD8]))
        if 0xCC <= m <= 0xCE:
            return self._take(self._u(sizes[m - 0xCC]))
        raise ValueError(f"unknown PackStream marker 0x{m:02X}")

    def _map(self, n: int) -> dict:
        out = {}
        for _ in range(n):
            k = self.unpack()
            out[k] = self.unpack()
        return out


# --- the script ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One expected RUN (query text and parameters) and the records to return."""

    query: str
    params: dict
    fields: list[str]
    records: list[list]
    # drop the connection after this many records the first time (then expect a retry)
    drop_after: int | None = None
    seen: int = 0

    @property
    def expected(self) -> int:
        return 2 if self.drop_after is not None else 1


class ConnectionDropped(Exception):
    pass


@dataclass
class _Conn:
    n: int
    state: str = "CONNECTED"  # CONNECTED -> AUTH -> READY -> TX -> (STREAMING) ; FAILED
    pending: list = field(default_factory=list)
    run: Run | None = None
    auto: bool = False
    ran: list = field(default_factory=list)  # queries run in the open transaction


class BoltServer:
    def __init__(self, *, user: str, password: str, database: str = "neo4j", fetch_size: int | None = None,
                 runs: list[Run] | None = None, write: bool = False) -> None:
        self.user, self.password, self.database, self.fetch_size = user, password, database, fetch_size
        self.write = write  # expect write transactions (BEGIN without mode "r") instead of read ones
        self.commits: list[list[str]] = []  # the queries of each committed transaction
        self.runs = list(runs or [])
        self.errors: list[str] = []
        self.log: list[tuple[int, str, Any]] = []
        self.auth_failures = 0
        self.drops = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._conns = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def uri(self, scheme: str = "bolt") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> "BoltServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self._sock.close()

    def verify(self) -> None:
        problems = list(self.errors)
        for r in self.runs:
            if r.seen != r.expected:
                problems.append(f"scripted RUN ran {r.seen} times, expected {r.expected}: {r.query} {r.params}")
        assert not problems, "Bolt conversation differs from the script:\n" + "\n".join(problems)

    def messages(self, name: str) -> list:
        return [fields for _, n, fields in self.log if n == name]

    # --- sockets ---

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns += 1
                n = self._conns
            threading.Thread(target=self._serve, args=(sock, n), daemon=True).start()

    def _serve(self, sock: socket.socket, n: int) -> None:
        conn = _Conn(n)
        try:
            sock.settimeout(60)
            hello = _recv(sock, 20)
            if hello[:4] != MAGIC:
                self._error(n, f"bad handshake preamble {hello[:4]!r}")
                return
            offers = [hello[4 + 4 * i : 8 + 4 * i] for i in range(4)]
            if not any(_offers(o, VERSION) for o in offers):
                self._error(n, f"driver did not offer Bolt {VERSION}: {[o.hex() for o in offers]}")
                sock.sendall(b"\x00\x00\x00\x00")
                return
            sock.sendall(bytes([0, 0, VERSION[1], VERSION[0]]))
            while True:
                msg = _read_message(sock)
                if msg is None:
                    return
                if not isinstance(msg, Struct):
                    self._error(n, f"not a message: {msg!r}")
                    return
                if not self._handle(sock, conn, msg):
                    return
        except ConnectionDropped:
            pass
        except (OSError, ValueError) as exc:
            if not self._closed:
                self.log.append((n, "SOCKET", str(exc)))
        finally:
            sock.close()

    def _error(self, n: int, text: str) -> None:
        with self._lock:
            self.errors.append(f"connection {n}: {text}")

    def _send(self, sock, tag: int, *fields) -> None:
        data = pack(Struct(tag, list(fields)))
        chunks = b"".join(struct.pack(">H", len(data[i : i + 0xFFFF])) + data[i : i + 0xFFFF] for i in range(0, len(data), 0xFFFF))
        sock.sendall(chunks + b"\x00\x00")

    def _fail(self, sock, conn: _Conn, code: str, message: str) -> bool:
        self._send(sock, FAILURE, {"code": code, "message": message})
        conn.state = "FAILED"
        return True

    def _unexpected(self, sock, conn: _Conn, text: str) -> bool:
        self._error(conn.n, text)
        return self._fail(sock, conn, "Neo.ClientError.Request.Invalid", f"test script: {text}")

    # --- the state machine ---

    def _handle(self, sock, conn: _Conn, msg: Struct) -> bool:
        name = NAMES.get(msg.tag, f"0x{msg.tag:02X}")
        f = msg.fields
        shown = f
        if msg.tag == LOGON and f and isinstance(f[0], dict):
            shown = [{k: ("***" if k == "credentials" else v) for k, v in f[0].items()}]
        self.log.append((conn.n, name, shown))
        if msg.tag == GOODBYE:
            return False
        if msg.tag == RESET:
            conn.state = "READY" if conn.state not in ("CONNECTED", "AUTH") else conn.state
            conn.run, conn.pending = None, []
            self._send(sock, SUCCESS, {})
            return True
        if conn.state == "FAILED":
            self._send(sock, IGNORED)
            return True
        if msg.tag == HELLO:
            if conn.state != "CONNECTED":
                return self._unexpected(sock, conn, "HELLO after the connection was set up")
            extra = f[0] if f else {}
            if not isinstance(extra, dict) or "user_agent" not in extra or "credentials" in extra:
                return self._unexpected(sock, conn, f"HELLO must carry user_agent and no credentials (Bolt 5.1+): {sorted(extra)}")
            conn.state = "AUTH"
            self._send(sock, SUCCESS, {"server": "Neo4j/5.26.0", "connection_id": f"bolt-{conn.n}", "hints": {}})
            return True
        if msg.tag == LOGON:
            if conn.state != "AUTH":
                return self._unexpected(sock, conn, "LOGON outside authentication")
            auth = f[0] if f else {}
            if auth.get("scheme") != "basic":
                return self._unexpected(sock, conn, f"LOGON scheme {auth.get('scheme')!r}, expected basic")
            if auth.get("principal") != self.user or auth.get("credentials") != self.password:
                with self._lock:
                    self.auth_failures += 1
                self._fail(sock, conn, UNAUTHORIZED, "The client is unauthorized due to authentication failure.")
                return True
            conn.state = "READY"
            self._send(sock, SUCCESS, {})
            return True
        if conn.state in ("CONNECTED", "AUTH"):
            return self._unexpected(sock, conn, f"{name} before authentication")
        if msg.tag == ROUTE:
            db = (f[2] or {}).get("db") if len(f) > 2 else None
            if db != self.database:
                return self._unexpected(sock, conn, f"ROUTE for database {db!r}, expected {self.database!r}")
            addr = f"127.0.0.1:{self.port}"
            servers = [{"addresses": [addr], "role": r} for r in ("ROUTE", "READ", "WRITE")]
            self._send(sock, SUCCESS, {"rt": {"ttl": 300, "db": self.database, "servers": servers}})
            return True
        if msg.tag == BEGIN:
            if conn.state != "READY":
                return self._unexpected(sock, conn, f"BEGIN in state {conn.state}")
            extra = dict(f[0]) if f else {}
            extra.pop("bookmarks", None)
            want = {"db": self.database} if self.write else {"mode": "r", "db": self.database}
            if extra != want:
                kind = "write" if self.write else "read"
                return self._unexpected(sock, conn, f"BEGIN {extra}, expected a {kind} transaction on {self.database!r}")
            conn.state = "TX"
            conn.ran = []
            self._send(sock, SUCCESS, {})
            return True
        if msg.tag == RUN:
            if conn.state != "TX":
                return self._unexpected(sock, conn, f"RUN outside an explicit read transaction (state {conn.state})")
            query, params = f[0], f[1]
            with self._lock:
                match = next((r for r in self.runs if r.query == query and r.params == params and r.seen < r.expected), None)
                if match is not None:
                    match.seen += 1
                    attempt = match.seen
            if match is None:
                return self._unexpected(sock, conn, f"RUN not in the script: {query!r} {params!r}")
            conn.run, conn.pending = match, list(match.records)
            conn.ran.append(query)
            conn.drop = match.drop_after if (match.drop_after is not None and attempt == 1) else None
            self._send(sock, SUCCESS, {"fields": match.fields, "t_first": 1, "qid": 0})
            conn.state = "STREAMING"
            return True
        if msg.tag in (PULL, DISCARD):
            if conn.state != "STREAMING":
                return self._unexpected(sock, conn, f"{name} with no result open")
            want = (f[0] or {}).get("n", -1) if f else -1
            if msg.tag == PULL and self.fetch_size is not None and want != self.fetch_size:
                return self._unexpected(sock, conn, f"PULL n={want}, expected the fetch size {self.fetch_size}")
            if msg.tag == PULL:
                if conn.drop is not None:  # the scripted failure: some records, then the line goes dead
                    for rec in conn.pending[: conn.drop]:
                        self._send(sock, RECORD, rec)
                    with self._lock:
                        self.drops += 1
                    raise ConnectionDropped()
                k = len(conn.pending) if want == -1 else min(want, len(conn.pending))
                for rec in conn.pending[:k]:
                    self._send(sock, RECORD, rec)
                conn.pending = conn.pending[k:]
            else:
                conn.pending = []
            if conn.pending:
                self._send(sock, SUCCESS, {"has_more": True})
            else:
                conn.state, conn.run = "TX", None
                self._send(sock, SUCCESS, {"type": "r", "t_last": 1, "db": self.database})
            return True
        if msg.tag == COMMIT:
            if conn.state != "TX":
                return self._unexpected(sock, conn, f"COMMIT in state {conn.state}")
            conn.state = "READY"
            with self._lock:
                self.commits.append(list(conn.ran))
            self._send(sock, SUCCESS, {"bookmark": f"kgscale-test:{conn.n}"})
            return True
        if msg.tag == ROLLBACK:
            if conn.state not in ("TX", "STREAMING"):
                return self._unexpected(sock, conn, f"ROLLBACK in state {conn.state}")
            conn.state = "READY"
            self._send(sock, SUCCESS, {})
            return True
        return self._unexpected(sock, conn, f"unexpected message {name} {f!r}")


def _offers(offer: bytes, version: tuple[int, int]) -> bool:
    """Does a 4-byte handshake offer (``00 range minor major``) include ``version``?"""
    _, rng, minor, major = offer
    return major == version[0] and minor - rng <= version[1] <= minor


def _recv(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("client closed the connection")
        buf += part
    return buf


def _read_message(sock):
    data = b""
    while True:
        try:
            size = struct.unpack(">H", _recv(sock, 2))[0]
        except ConnectionError:
            return None
        if size == 0:
            if not data:
                continue  # a NOOP chunk (keep-alive)
            return Unpacker(data).unpack()
        data += _recv(sock, size)
