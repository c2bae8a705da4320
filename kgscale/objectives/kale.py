"""KALE (Knowledge-Aware LEarning, 2025): knowledge-aware fine-tuning.

Each sample is a question x, a KG rationale r and an answer y. The model reads
the answer twice: after the question alone, and after the question and the
rationale. The prediction with the rationale is a fixed target (no gradient)
that the prediction without it is pulled towards, so that the model learns to
reason the way the rationale does without needing it in context:

    p_i     = softmax(f(x, y_<i))          (without the rationale)
    p_i^r   = softmax(f(x, r, y_<i))       (with the rationale)

    L = CE(p, y) + beta * CE(p^r, y) + alpha * (1/|y|) sum_i KL(sg[p_i^r] || p_i)

over the answer tokens i only; sg is stop-gradient; alpha (``kl_weight``) and
beta (``rationale_ce_weight``, training on the answer with the rationale in
context as well) are configuration.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from kgscale.config import StrictModel
from kgscale.kg.qa_parts import Part
from kgscale.models.training import causal_parts
from kgscale.objectives.base import Objective, ObjectiveOutput, masked_token_ce, shifted_label_positions
from kgscale.objectives.method import Method


def kale_loss(logits_without: torch.Tensor, logits_with: torch.Tensor, targets: torch.Tensor, kl_weight: float,
              rationale_ce_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``logits_without`` and ``logits_with`` [N, V]: the predictions of the same
    N answer tokens ``targets`` [N] without and with the rationale in context.
    Returns (L, parts) with L as in the module docstring."""
    if logits_without.shape != logits_with.shape:
        raise ValueError(f"the two views predict different answer tokens: {tuple(logits_without.shape)} "
                         f"vs {tuple(logits_with.shape)}; the answer must be tokenised identically in both")
    ce = masked_token_ce(logits_without, targets)
    ce_with = masked_token_ce(logits_with, targets)
    target = F.log_softmax(logits_with.detach().float(), dim=-1)
    log_p = F.log_softmax(logits_without.float(), dim=-1)
    # KL(target || p) per token, averaged over tokens (kl_div's "batchmean" on [N, V])
    kl = F.kl_div(log_p, target, log_target=True, reduction="batchmean")
    loss = ce + rationale_ce_weight * ce_with + kl_weight * kl
    return loss, {"ce": ce.detach(), "ce_with_rationale": ce_with.detach(), "kl": kl.detach()}


class KALESettings(StrictModel):
    name: Literal["kale"] = "kale"
    # alpha: weight of KL(prediction with rationale || prediction without)
    kl_weight: float = Field(1.0, ge=0.0)
    # beta: weight of the answer's CE with the rationale in context
    rationale_ce_weight: float = Field(1.0, ge=0.0)


class KALE(Objective):
    """Batch: ``with_input_ids`` / ``with_attention_mask`` / ``with_labels``
    [B, Tw] (question + rationale + answer) and ``without_input_ids`` /
    ``without_attention_mask`` / ``without_labels`` [B, To] (question + answer);
    labels are -100 except on the answer tokens, which are the same ids in both."""

    name: ClassVar[str] = "kale"
    model_kinds = ("causal",)
    batch_keys = ("with_input_ids", "with_attention_mask", "with_labels",
                  "without_input_ids", "without_attention_mask", "without_labels")

    def __init__(self, kl_weight: float = 1.0, rationale_ce_weight: float = 1.0) -> None:
        super().__init__()
        self.kl_weight = kl_weight
        self.rationale_ce_weight = rationale_ce_weight

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        trunk, head = causal_parts(model)

        def answer_logits(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = trunk(input_ids=batch[f"{prefix}_input_ids"],
                           attention_mask=batch[f"{prefix}_attention_mask"]).last_hidden_state
            mask, targets = shifted_label_positions(batch[f"{prefix}_labels"])
            return head(hidden[:, :-1][mask]), targets

        logits_without, targets = answer_logits("without")
        if self.kl_weight == 0 and self.rationale_ce_weight == 0:
            # plain SFT on question -> answer (KALE's baseline): the rationale
            # view would only cost a forward pass
            ce = masked_token_ce(logits_without, targets)
            return ObjectiveOutput(ce, {"loss": ce.detach(), "ce": ce.detach(),
                                        "answer_tokens": torch.tensor(float(targets.numel()))})
        if self.rationale_ce_weight == 0:
            # the view with the rationale is only the KL's fixed target: without
            # a graph, the backward pass does not run through it (a weight of 0
            # would otherwise cost a whole backward of zeros)
            with torch.no_grad():
                logits_with, targets_with = answer_logits("with")
        else:
            logits_with, targets_with = answer_logits("with")
        if not torch.equal(targets_with, targets):
            raise ValueError("the answer tokens differ between the views with and without the rationale")
        loss, parts = kale_loss(logits_without, logits_with, targets, self.kl_weight, self.rationale_ce_weight)
        return ObjectiveOutput(loss, {"loss": loss.detach(), **parts, "answer_tokens": torch.tensor(float(targets.numel()))})


# ---------------------------------------------------------------- wiring

class KALEData(StrictModel):
    """KALE's own ``data`` settings (its samples come from ``data.rationales``)."""

    # skip rationales the rationale stage flagged (they are counted)
    skip_flagged: bool = True
    # train on every question of these multiple-choice QA files (paths,
    # folders of *.jsonl or dataset:NAME), a rationale added where the
    # rationale stage has a usable one (kgscale.samples.kale); empty: the
    # rationale stage's questions only
    questions: list[Path] = []
    # which part of those files (kgscale.kg.qa_parts)
    questions_part: Part = "all"

    @field_validator("questions", mode="before")
    @classmethod
    def _registry_names(cls, value):
        """``dataset:commonsenseqa`` -> the registry's local file."""
        from kgscale.kg.registry import resolve_references

        return resolve_references(value)


def _samples(cfg, snapshot, rejects):
    from kgscale.samples.kale import kale_samples

    d = cfg.data
    return kale_samples(d.rationales, d.skip_flagged, rejects, d.questions, d.questions_part)


def _tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KALETokenize

    return KALETokenize, base


METHOD = Method("rationales", _samples, _tokenizer, KALEData)
