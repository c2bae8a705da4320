"""KILM (Xu et al., ACL 2023): generative knowledge infilling for
encoder-decoder LMs (BART).

An entity mention in a context is marked with new special tokens and followed
by its description:

    <ent> name</ent><ent_desc> name<sep> description</ent_desc> context ...

The encoder reads a corrupted copy: the description is replaced by a single
``<mask>`` and the rest of the context gets BART text-infilling noise (spans
with Poisson(3) lengths covering 30% of its tokens, each replaced by one
mask; built in :mod:`kgscale.samples.noise`). The decoder regenerates the
original, description included, with the seq2seq cross-entropy:

    L = -(1/|y|) sum_t log p(y_t | y_<t, x_noised)

The architecture is unchanged; the special tokens are added to the tokenizer
and the embedding matrix is resized (:func:`kgscale.models.training.load_for_training`).
The ``description`` metric is the same CE restricted to the description's
tokens: the knowledge the model has to supply.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from kgscale.config import StrictModel
from kgscale.objectives.base import Objective, ObjectiveOutput, masked_token_ce
from kgscale.objectives.method import Method

ENTITY_TOKENS = ("<ent>", "</ent>", "<ent_desc>", "</ent_desc>", "<sep>")


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits`` [B, T, V] of the decoder, ``labels`` [B, T] (-100 = padding):
    mean CE over the labelled positions (the decoder input is already shifted)."""
    return masked_token_ce(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


class KILMSettings(StrictModel):
    name: Literal["kilm"] = "kilm"


class KILM(Objective):
    """Batch: ``input_ids`` / ``attention_mask`` [B, S] (noised source),
    ``decoder_input_ids`` / ``decoder_attention_mask`` [B, T] (target shifted
    right behind the decoder start token), ``labels`` [B, T] (-100 = padding),
    ``description_mask`` [B, T] bool (the description's tokens in ``labels``)."""

    name: ClassVar[str] = "kilm"
    model_kinds = ("seq2seq",)
    special_tokens = ENTITY_TOKENS
    batch_keys = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask", "labels", "description_mask")

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"],
                       decoder_attention_mask=batch["decoder_attention_mask"]).logits
        labels = batch["labels"]
        loss = seq2seq_loss(logits, labels)
        with torch.no_grad():
            desc = batch["description_mask"].bool() & (labels != -100)
            desc_ce = masked_token_ce(logits[desc], labels[desc]) if desc.any() else torch.zeros((), device=logits.device)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "description": desc_ce})


# ---------------------------------------------------------------- wiring

class KILMData(StrictModel):
    """KILM's own ``data`` settings (``data.seed`` also seeds its noise)."""

    # sentences of verbalised neighbourhood around the entity
    neighbours: int = Field(4, ge=1)
    # share of context tokens under text-infilling masks
    mask_ratio: float = Field(0.3, ge=0.0, le=1.0)
    # mean span length of the infilling noise
    poisson_lambda: float = Field(3.0, gt=0.0)
    # descriptions are cut at this many tokens
    max_description_length: int = Field(64, ge=1)


def _samples(cfg, snapshot, rejects):
    from kgscale.samples.kilm import kilm_samples

    return kilm_samples(snapshot, cfg.data.neighbours, cfg.data.seed, rejects)


def _tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KILMTokenize

    d = cfg.data
    return KILMTokenize, {**base, "decoder_start_token_id": decoder_start_token_id, "mask_ratio": d.mask_ratio,
                          "poisson_lambda": d.poisson_lambda, "max_description_length": d.max_description_length,
                          "seed": d.seed}


def _check_tokenizer(cfg, tokenizer) -> None:
    from kgscale.config import ConfigError

    if tokenizer.mask_token_id is None:
        raise ConfigError(f"model.model: KILM needs a tokenizer with a mask token; {cfg.model.model!r} has none")


METHOD = Method("snapshot", _samples, _tokenizer, KILMData, check_tokenizer=_check_tokenizer)
