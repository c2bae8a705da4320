"""Fetch a file over HTTP(S) or from a local mirror, verified by sha256.

The file is streamed into a temporary name beside its destination, hashed on
the way, and renamed only when the transfer is complete and the checksum
matches: a broken transfer or a wrong file leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from kgscale.errors import UserError


class DownloadError(UserError, IOError):
    """The transfer failed (after retries); nothing was written."""


class ChecksumError(DownloadError):
    """The bytes arrived but are not the expected file; nothing was written."""


def fetch(source: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0, retries: int = 3) -> Path:
    """Copy ``source`` (``http(s)://`` URL or local path) to ``dest``.

    Network failures are retried with backoff; a checksum mismatch is not
    (the server is serving the wrong bytes, and asking again will not help).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(retries):
        tmp = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex[:8]}"
        try:
            digest = _copy(source, tmp, timeout)
            if digest != sha256:
                raise ChecksumError(
                    f"{source}: checksum mismatch: expected sha256 {sha256}, got {digest}; the file was not kept"
                )
            tmp.replace(dest)
            return dest
        except ChecksumError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 429:
                break  # not found / forbidden: retrying will not change it
            time.sleep(min(0.5 * 2**attempt, 5.0))
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(f"{source}: download failed after {attempt + 1} attempt(s): {last}; nothing was written")


def _copy(source: str, tmp: Path, timeout: float) -> str:
    h = hashlib.sha256()
    if source.startswith(("http://", "https://")):
        req = urllib.request.Request(source, headers={"User-Agent": "kgscale"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
            expected = resp.headers.get("Content-Length")
            got = 0
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                got += len(block)
            if expected is not None and got != int(expected):
                raise DownloadError(f"transfer ended after {got} of {expected} bytes")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"mirror file not found: {path}")
        with open(path, "rb") as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
                h.update(block)
    return h.hexdigest()
