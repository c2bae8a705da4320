"""What the ingress checks about a request before it reads the body.

- ``Host`` must be one of the allowed names: the loopback names, the bound
  address and ``http.allowed_hosts``. With the default (no token, bound to
  127.0.0.1) a web page the user visits could otherwise drive the server:
  DNS rebinding points a name the page controls at 127.0.0.1, and the
  browser then sends that name as Host. A foreign Host is a 421.
- A POST must say it carries JSON (``application/json`` or ``*/*+json``):
  a browser sends ``text/plain`` cross-site without asking, but JSON only
  after a CORS preflight, which this server grants only to the origins in
  ``http.cors_origins`` (none by default: then it sends no CORS headers and
  no page can post to it or read an answer). Anything else is a 415.
- The body is read as it arrives and refused with 413 past
  ``http.max_body_bytes``: a chunked body has no Content-Length to check
  first and was read whole before.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from kgscale.serve.errors import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(bind_host: str, extra: list[str]) -> frozenset[str]:
    names = {*LOOPBACK_NAMES, *(h.lower() for h in extra)}
    if bind_host not in ("0.0.0.0", "::", ""):
        names.add(bind_host.lower())
    return frozenset(names)


def host_name(header: str | None) -> str:
    """``Host`` without its port (``[::1]:8000`` -> ``::1``)."""
    h = (header or "").strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def check_host(header: str | None, allowed: frozenset[str]) -> None:
    if "*" in allowed:
        return
    name = host_name(header)
    if name not in allowed:
        raise ApiError(421, f"Host {name[:100]!r} is not served here; allowed: {', '.join(sorted(allowed))} "
                            f"(set http.allowed_hosts to add names)", code="host_not_allowed")


def check_json_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = f"{media[:80]!r}" if media else "none"
        raise ApiError(415, f"the body must be sent as Content-Type: application/json (got {shown})",
                       code="unsupported_media_type")


async def read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body has more than {limit} bytes; the limit is {limit}")
        parts.append(chunk)
    return b"".join(parts)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULT_PORTS = {"http": 80, "https": 443}


def http_origin(value: str) -> str:
    """A configured CORS origin as browsers send it in ``Origin``: scheme and
    host in lower case, the port only when it is not the scheme's default."""
    text = value.strip()
    if text == "*" or "*" in text:
        raise ValueError(f"cors_origins: {value!r}: list each origin; a wildcard would let every web page the "
                         "user visits call this server")
    parts = urlsplit(text.rstrip("/"))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query \
            or parts.fragment or parts.username or parts.password or port == -1:
        raise ValueError(f"cors_origins: {value!r} is not an origin; write scheme://host[:port], "
                         "e.g. https://app.example.com or http://localhost:3000")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def allowed_origin(header: str | None, origins: frozenset[str]) -> str | None:
    """The request's ``Origin`` when CORS is granted to it, else None."""
    if not header or not origins:
        return None
    origin = header.strip().lower()
    return origin if origin in origins else None


def cors_headers(origin: str) -> dict[str, str]:
    """What an answer to an allowed origin carries, so that its page may read it."""
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight_headers(origin: str) -> dict[str, str]:
    """The answer to an allowed origin's preflight: the methods and headers
    the API takes (a token travels in Authorization)."""
    return {**cors_headers(origin), "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600"}
