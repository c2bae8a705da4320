"""Sentence representations from hidden states.

KaLM represents a text by the last-layer hidden state at its final (EOS)
token, L2-normalised; sentence encoders such as MiniLM use the mean over
non-padding tokens. Both handle left and right padding.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Pooling = Literal["last", "mean", "cls"]


def last_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] mask -> [B]: each row's last non-padding position (left or
    right padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``hidden`` [B, T, D], ``attention_mask`` [B, T] -> [B, D]: the state at
    each row's last non-padding position (works for left or right padding)."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(attention_mask)]


def mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: Pooling, normalize: bool = True) -> torch.Tensor:
    if how == "last":
        out = last_token(hidden, attention_mask)
    elif how == "mean":
        out = mean(hidden, attention_mask)
    elif how == "cls":
        out = hidden[:, 0]
    else:
        raise ValueError(f"unknown pooling {how!r}; use last, mean or cls")
    return F.normalize(out, dim=-1) if normalize else out
