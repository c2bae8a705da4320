"""Micro-batches of ragged token lists -> padded tensors, on the worker.

Columns are recognised by name: ``*input_ids`` are padded with the pad id
and get a matching ``*attention_mask``; ``*labels`` are padded with -100 (no
loss); other list columns (``description_mask``) with 0; scalar columns
become 1-D tensors. Padding is on the right: last-token pooling and the
shifted LM losses handle it, and no position ids need to move.
"""
from __future__ import annotations

import numpy as np
import torch


def _fill(name: str, pad_id: int) -> int:
    if name.endswith("labels"):
        return -100
    if name.endswith("input_ids"):
        return pad_id
    return 0


def _rows(col: np.ndarray) -> list[np.ndarray]:
    if col.dtype == object:
        return [np.asarray(x) for x in col]
    return list(col) if col.ndim == 2 else []


def pad(rows: list[np.ndarray], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] int64 padded on the right, [B] lengths)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.full((len(rows), int(lengths.max(initial=1))), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out), torch.from_numpy(lengths)


def collate(batch: dict[str, np.ndarray], pad_id: int, keys: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """(tensors, number of real input tokens). ``keys``: the tensors to keep
    (an objective's ``batch_keys``); None keeps all."""
    out: dict[str, torch.Tensor] = {}
    tokens = 0
    wanted = None if keys is None else set(keys)
    for name, col in batch.items():
        if wanted is not None and name not in wanted and not name.endswith("input_ids"):
            continue  # a column the objective does not read (a row id, KILM's noise inputs)
        rows = _rows(col) if name.endswith(("input_ids", "labels", "_mask")) else []
        if not rows:
            out[name] = torch.from_numpy(np.array(col))  # a copy: Ray hands out read-only arrays
            continue
        padded, lengths = pad(rows, _fill(name, pad_id))
        out[name] = padded
        if name.endswith("input_ids"):
            tokens += int(lengths.sum())
            mask_name = name[: -len("input_ids")] + "attention_mask"
            out[mask_name] = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()
    if keys is not None:
        missing = [k for k in keys if k not in out]
        if missing:
            raise KeyError(f"the batch lacks {', '.join(missing)} (has {', '.join(sorted(out))})")
        out = {k: out[k] for k in keys}
    return out, tokens
