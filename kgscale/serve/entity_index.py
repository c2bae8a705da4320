"""The entity index of KG completion: one unit vector per entity (its tail
view, embedded as evaluation embeds it) and top-k search by cosine.

On disk (``kg.index_dir``)::

    INDEX/
      entity_embeddings.npy   float32 [C, D], unit rows
      entity_ids.npy          int64 [C], the snapshot id of each row
      manifest.json           stage "entity-index": model, pooling, max_length,
                              snapshot, counts: what the vectors mean

An index is used only when its manifest matches the served model, pooling,
text length and snapshot; a mismatch is an error (vectors of another model
would rank nonsense without any sign of it).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from kgscale.errors import UserError
from kgscale.output import atomic_dir, read_manifest, write_manifest

EMBEDDINGS = "entity_embeddings.npy"
IDS = "entity_ids.npy"
log = logging.getLogger("kgscale.serve")


class IndexMismatchError(UserError, ValueError):
    pass


def fingerprint(model_cfg) -> dict:
    """What identifies the model's weights: its name, and for a local
    directory (a trained model, a converted GGUF, a tiny model) the size and
    time of each weight and config file."""
    from kgscale.models.backbone import resolve

    fp = {"model": model_cfg.model, "gguf_file": model_cfg.gguf_file, "seed": model_cfg.seed}
    path = Path(model_cfg.model).expanduser()
    if not path.is_dir():
        path = resolve(model_cfg)
    if isinstance(path, Path) and path.is_dir():
        fp["files"] = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir())
                       if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".gguf"}}
    return fp


def index_meta(cfg, snapshot, pooling: str) -> dict:
    """What an index's vectors mean; an index on disk is used only if its
    manifest says the same."""
    return {"model": fingerprint(cfg.model), "pooling": pooling, "max_length": cfg.kg.max_length,
            "max_entity_tokens": cfg.kg.max_entity_tokens, "text_view": "entity_text(name, description)",
            "snapshot": str(snapshot.path.resolve()), "snapshot_created_at": snapshot.manifest.get("created_at")}


def check_index_dir(cfg, kind: str) -> None:
    """Fail before deploying when ``kg.index_dir`` holds an index of another
    model or setting (replicas would fail to start, again and again)."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.serve.runtime import default_pooling

    directory = cfg.kg.index_dir if cfg.kg is not None else None
    if directory is None or not (directory / "manifest.json").is_file():
        return
    snap = Snapshot(cfg.kg.snapshot)
    pooling = default_pooling(kind) if cfg.pooling.how == "auto" else cfg.pooling.how
    EntityIndex.load(directory, index_meta(cfg, snap, pooling), snap.num_entities)


class EntityIndex:
    def __init__(self, embeddings: np.ndarray, ids: np.ndarray, num_entities: int) -> None:
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.row_of = np.full(num_entities, -1, dtype=np.int64)
        self.row_of[self.ids] = np.arange(len(self.ids))

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(entity ids, cosine scores) of the ``k`` best entities, best first;
        entities in ``exclude`` are skipped (fewer than ``k`` when too few remain)."""
        scores = self.embeddings @ np.asarray(query, dtype=np.float32)
        if exclude is not None and len(exclude):
            rows = self.row_of[np.asarray(exclude, dtype=np.int64)]
            scores[rows[rows >= 0]] = -np.inf
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.size else np.arange(self.size)
        top = top[np.lexsort((self.ids[top], -scores[top]))]  # ties: lower id first, reproducibly
        top = top[np.isfinite(scores[top])]
        return self.ids[top], scores[top]

    # ---- on disk ----------------------------------------------------------

    def save(self, directory: Path, meta: dict) -> None:
        with atomic_dir(directory, overwrite=True) as tmp:
            np.save(tmp / EMBEDDINGS, self.embeddings)
            np.save(tmp / IDS, self.ids)
            write_manifest(tmp, "entity-index", **meta, counts={"rows": self.size, "dim": self.dim})

    @classmethod
    def load(cls, directory: Path, meta: dict, num_entities: int) -> "EntityIndex":
        manifest = read_manifest(directory)
        wrong = [k for k, v in meta.items() if manifest.get(k) != v]
        if wrong:
            detail = "; ".join(f"{k}: index has {manifest.get(k)!r}, served {meta[k]!r}" for k in wrong)
            raise IndexMismatchError(f"entity index {directory} was made differently ({detail}); remove it or set "
                                     f"kg.index_dir to another directory to build a new one")
        emb = np.load(directory / EMBEDDINGS, mmap_mode=None)
        ids = np.load(directory / IDS)
        if emb.ndim != 2 or len(emb) != len(ids) or (len(ids) and ids.max() >= num_entities):
            raise IndexMismatchError(f"entity index {directory}: {emb.shape} embeddings for {len(ids)} ids of "
                                     f"{num_entities} entities")
        return cls(emb, ids, num_entities)


def build_index(runtime, texts: list[str], ids: np.ndarray, num_entities: int, *, max_length: int,
                batch_size: int) -> EntityIndex:
    """Embed the entities' texts with the served model (cut at ``max_length``
    tokens, as evaluation does)."""
    from kgscale.serve.runtime import embedding_ids

    t0 = time.perf_counter()
    out = np.zeros((len(texts), runtime.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = embedding_ids(runtime.tokenizer, texts[start:start + batch_size], append_eos=runtime.append_eos,
                              max_length=max_length)
        out[start:start + len(chunk)] = runtime.embed(chunk, role="key")
        done = start + len(chunk)
        if done == len(texts) or (start // batch_size) % 50 == 49:
            log.info("entity index: %d / %d entities embedded (%.0f s)", done, len(texts), time.perf_counter() - t0)
    return EntityIndex(out, ids, num_entities)
