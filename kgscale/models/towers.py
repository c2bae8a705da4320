"""The encoders of a dual-view model: one shared tower, or a query tower and a key tower.

KaLM encodes both views (the (h, r) query and the entity) with one model.
SimKGC uses two towers of the same architecture: the query tower reads
queries, the key tower reads entities. With ``key_tower: frozen`` the key
tower is the starting model and never changes, so a bank of every entity's
key embedding computed once stays exact for the whole run and each step can
rank a query against every entity for the cost of one matmul (as LiT locks
its image tower).

On disk a two-tower model is the query tower as an ordinary Hugging Face
directory with the key tower in its subdirectory ``key_tower/``
(:data:`KEY_TOWER`); everything that embeds entity views reads that one when
it is there (:func:`key_tower_dir`).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

KEY_TOWER = "key_tower"


class TwoTowers(nn.Module):
    """``query`` and ``key`` backbones of the same architecture; with
    ``frozen_key`` the key tower gets no gradients and stays in eval mode."""

    def __init__(self, query: nn.Module, key: nn.Module, frozen_key: bool) -> None:
        super().__init__()
        self.query = query
        self.key = key
        self.frozen_key = frozen_key
        if frozen_key:
            key.requires_grad_(False)
            key.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_key:
            self.key.eval()  # no dropout: the bank was computed in eval mode
        return self


def trunk(model: nn.Module, kind: str) -> nn.Module:
    """The module that returns last hidden states: a causal LM's decoder stack
    (no vocabulary projection), an encoder itself."""
    from kgscale.models.training import causal_parts, unwrap_peft

    if kind == "causal":
        return causal_parts(model)[0]
    return unwrap_peft(model)


def query_and_key(model: nn.Module, kind: str) -> tuple[nn.Module, nn.Module, bool]:
    """(query trunk, key trunk, key tower frozen) of a one- or two-tower model."""
    if isinstance(model, TwoTowers):
        return trunk(model.query, kind), trunk(model.key, kind), model.frozen_key
    t = trunk(model, kind)
    return t, t, False


def key_tower_dir(model_dir: str | Path) -> Path | None:
    """The key tower of a two-tower model directory (None: one tower)."""
    p = Path(model_dir).expanduser() / KEY_TOWER
    return p if (p / "config.json").is_file() else None
