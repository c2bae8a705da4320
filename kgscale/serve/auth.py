"""Optional bearer-token authentication.

The token is read from the environment by the process that starts serving
(``api_token_env``, default ``KGSCALE_API_TOKEN``); only its SHA-256 travels
to the ingress replicas, so the secret itself never enters the Serve
application's config, the Ray object store or a log. Requests are compared
by hash in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import os

from kgscale.serve.errors import ApiError

# paths that answer without a token: liveness probes carry none
OPEN_PATHS = ("/health",)


def token_digest_from_env(var: str) -> str | None:
    token = os.environ.get(var, "")
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def check(authorization: str | None, digest: str | None) -> None:
    """Raise 401 unless ``authorization`` is ``Bearer <token>`` with the token
    whose digest is ``digest`` (no digest: authentication is off)."""
    if digest is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'", code="invalid_api_key")
    presented = hashlib.sha256(token.strip().encode()).hexdigest()
    if not hmac.compare_digest(presented, digest):
        raise ApiError(401, "invalid bearer token", code="invalid_api_key")
