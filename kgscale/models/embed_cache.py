"""A content-addressed cache of text embeddings.

Embedding every entity is the largest cost of KG completion on a CPU (41k
WN18RR entities take about a minute with MiniLM here), and the same entity
views are often embedded by the same weights more than once: a frozen key
tower is byte-for-byte the model it started from, so a run that evaluates
the starting model, builds its training bank and evaluates the trained model
needs the entity embeddings once. An entry is keyed by the weights' content
(sha256 of the weight files), everything that shapes a view (pooling,
maximum length, dtype, the role) and the sha256 of the texts in order; a
change to any of them is a miss.

Entries live in ``$KGSCALE_EMBED_CACHE`` (default
``~/.cache/kgscale/embeddings``), one ``.npy`` a key, written atomically;
deleting the directory is always safe. ``embed.cache: false`` bypasses it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def cache_dir() -> Path:
    return Path(os.environ.get("KGSCALE_EMBED_CACHE") or Path.home() / ".cache" / "kgscale" / "embeddings")


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_identity(model_dir: str | Path) -> str:
    """sha256 over the names and contents of a model directory's weight files
    (not its subdirectories: a key tower is its own model)."""
    d = Path(model_dir)
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no weight files in {d}")
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}:{_file_digest(str(p), st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


def texts_digest(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def cache_key(identity: str, settings: dict, texts) -> str:
    blob = json.dumps({"weights": identity, "settings": settings, "texts": texts_digest(texts)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load(key: str, rows: int) -> np.ndarray | None:
    path = cache_dir() / f"{key}.npy"
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode=None)
    except (OSError, ValueError):
        return None  # a damaged entry is a miss; it is rewritten
    return arr if arr.ndim == 2 and arr.shape[0] == rows else None


def store(key: str, embeddings: np.ndarray) -> None:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{key}.{os.getpid()}.tmp.npy"
    np.save(tmp, np.ascontiguousarray(embeddings, dtype=np.float32))
    os.replace(tmp, d / f"{key}.npy")
