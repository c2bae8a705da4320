"""What every objective is: a module that turns a model and a batch of tensors
into a loss and metrics.

Objectives know nothing about Ray, DeepSpeed or files. The training loop wraps
the backbone and the objective in one :class:`TrainModule`, so that a learnable
parameter of an objective (KaLM's temperature) is trained, synchronised and
checkpointed with the model, and so that DeepSpeed or DDP see one forward call
per micro-batch however many times the objective runs the backbone inside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from kgscale.models.backbone import Kind


@dataclass
class ObjectiveOutput:
    """``loss``: scalar to minimise. ``metrics``: detached scalar tensors (each
    loss part, temperature, ...), turned into floats only when logged."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    """Base class. Subclasses set the class attributes and implement
    :meth:`forward`; the batch keys they read are listed in ``batch_keys``."""

    #: the config name (``objective.name``)
    name: ClassVar[str]
    #: the backbone kinds it trains
    model_kinds: ClassVar[tuple[Kind, ...]]
    #: LoRA target modules when the config names none (None: every linear layer)
    default_lora_targets: ClassVar[list[str] | None] = None
    #: special tokens it adds to the tokenizer (the embeddings are resized)
    special_tokens: ClassVar[tuple[str, ...]] = ()
    #: tensors it reads from a batch
    batch_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, settings, *, known_pairs: torch.Tensor | None = None, num_answers: int | None = None,
                      kind: str | None = None) -> "Objective":
        """The module for ``settings`` (its settings model, ``name`` aside, as
        keyword arguments). The driver's inputs (the training graph's known
        (query, answer) keys, the entity count, the backbone's kind) are
        offered to every objective; one that reads them overrides this."""
        return cls(**settings.model_dump(exclude={"name"}))

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:  # pragma: no cover
        raise NotImplementedError

    def summarize_state(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        """The learned scalars of this objective, from its (gathered) state dict,
        for the exported model's ``objective.json``."""
        return {k: float(v) for k, v in state.items() if v.numel() == 1}


class TrainModule(nn.Module):
    """The backbone and the objective as one module: ``forward(batch)`` is one
    micro-batch's loss and metrics."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        return self.objective(self.model, batch)


def full_precision(device: torch.device):
    """A block computed in fp32 even under bf16 autocast: cosines of unit
    vectors scaled by 1/tau = 20 lose about 0.1 in bf16, which the
    contrastive losses cannot afford."""
    return torch.autocast(device.type, enabled=False)


def masked_token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens.

    ``logits`` [N, V], ``labels`` [N] with -100 for tokens without a loss:
    ``CE = -(1/|L|) sum_{i in L} log softmax(logits_i)[labels_i]``,
    L = {i : labels_i != -100}. Computed in fp32 whatever the logits' dtype."""
    return nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100)


def shifted_label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a causal LM the hidden state at position t predicts token t+1.

    ``labels`` [B, T] (-100 = no loss) -> (mask [B, T-1] over the hidden states
    that predict a labelled token, targets [N]) where N = mask.sum()."""
    targets = labels[:, 1:]
    mask = targets != -100
    return mask, targets[mask]
