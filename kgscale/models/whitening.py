"""Whitening of a frozen key tower's embedding space.

An untrained causal LM's EOS states are highly anisotropic: SmolLM2-135M's
key embeddings of WN18RR's entities have a mean pairwise cosine of 0.81, and
after removing their mean one direction still holds 47% of the variance
(measured on 8,000 entities). Against a *frozen* bank of such keys a query
tower can separate entities only by small residuals, and KaLM's loss barely
moves below a uniform guess. Whitening the key space (BERT-whitening, Su et
al. 2021: subtract the bank's mean, rotate onto its principal axes and
scale each by its spread) gives every direction the same weight, so cosines
between whitened unit rows use the whole sphere. The query tower is trained
against the whitened bank, its own outputs put through the same map.

The map is fitted once from the bank (exact for a frozen key tower) and is
part of the trained model: it is written beside the weights
(:data:`WHITENING_FILE`), and everything that embeds with that model
(evaluation, ``kgscale predict``, the serve replica) applies it to both the
query and the key views, after the embedding cache, which keeps the towers'
own embeddings (so the starting model's cached entity embeddings still
serve the trained model's key tower).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

WHITENING_FILE = "whitening.safetensors"
# a direction whose spread is this small a fraction of the largest one is
# scaled as if it had that spread, so that near-empty directions (numerical
# noise of the bank) are not blown up into the cosine
_MIN_SPREAD = 1e-3


@dataclass
class Whitening:
    """x -> unit((x - mean) @ matrix), for [N, D] embeddings."""

    mean: torch.Tensor  # [D]
    matrix: torch.Tensor  # [D, D]: the output has the model's width

    @classmethod
    def fit(cls, embeddings: torch.Tensor) -> "Whitening":
        """The map that gives ``embeddings`` (the bank's rows) zero mean and
        identity covariance, up to a common scale."""
        if embeddings.shape[0] <= embeddings.shape[1]:
            raise ValueError(f"whitening a bank of {embeddings.shape[0]} entities in {embeddings.shape[1]} dimensions: "
                             "it needs more entities than dimensions to estimate every direction's spread")
        x = embeddings.double()
        mean = x.mean(0)
        _, spread, vt = torch.linalg.svd(x - mean, full_matrices=False)
        spread = spread.clamp_min(spread[0] * _MIN_SPREAD)
        return cls(mean.float(), (vt.T / spread).float())

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.float() - self.mean.to(x.device)) @ self.matrix.to(x.device)
        return torch.nn.functional.normalize(y, dim=-1)

    def apply_numpy(self, x: np.ndarray) -> np.ndarray:
        return self.apply(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def save(self, model_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(model_dir) / WHITENING_FILE
        save_file({"mean": self.mean.contiguous().cpu(), "matrix": self.matrix.contiguous().cpu()}, str(path))
        return path


def load_whitening(model: str | Path) -> Whitening | None:
    """The whitening a model directory was trained with (None: none, or not a
    local directory, such as a registry name or a hub id)."""
    path = Path(str(model)).expanduser() / WHITENING_FILE
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        t = load_file(str(path))
        mean, matrix = t["mean"], t["matrix"]
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise ValueError(f"{path} is not a readable whitening (tensors 'mean' and 'matrix'): {exc}") from exc
    if mean.ndim != 1 or matrix.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"{path}: a whitening's mean is [D] and its matrix [D, D], not "
                         f"{list(mean.shape)} and {list(matrix.shape)}")
    return Whitening(mean.float(), matrix.float())
