"""Training objectives: one module a method, each a plain ``nn.Module``
(tensors in, loss and metrics out).

``objective.name`` in a training config picks one:

- ``kalm``: KaLM explicit + implicit alignment (contrastive + lambda * LM)
- ``kalm_contrastive``: KaLM explicit alignment alone (dual-view contrastive)
- ``kalm_lm``: KaLM implicit alignment alone (triple completion LM)
- ``kale``: KALE knowledge-aware fine-tuning (CE + alpha * KL)
- ``kilm``: KILM generative knowledge infilling (encoder-decoder)
"""
from __future__ import annotations

from typing import Annotated, Union

import torch
from pydantic import Field

from kgscale.objectives.base import Objective, ObjectiveOutput, TrainModule
from kgscale.objectives.kale import KALE, KALESettings
from kgscale.objectives.kalm import KaLM, KaLMCompletion, KaLMCompletionSettings, KaLMContrastive, KaLMContrastiveSettings, KaLMSettings
from kgscale.objectives.kilm import KILM, KILMSettings

#: name -> objective class
OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (KaLM, KaLMContrastive, KaLMCompletion, KALE, KILM)}

ObjectiveSettings = Annotated[
    Union[KaLMSettings, KaLMContrastiveSettings, KaLMCompletionSettings, KALESettings, KILMSettings],
    Field(discriminator="name"),
]


def objective_class(name: str) -> type[Objective]:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; objectives are {', '.join(sorted(OBJECTIVES))}") from None


def build_objective(settings, *, known_pairs: torch.Tensor | None = None, num_answers: int | None = None,
                    kind: str | None = None) -> Objective:
    """The objective module for ``settings``; KaLM's contrastive objectives take
    the training graph's (query, answer) keys so true pairs are not negatives,
    the number of entities, and the backbone's kind (its pooling)."""
    params = settings.model_dump(exclude={"name"})
    cls = objective_class(settings.name)
    if issubclass(cls, KaLMContrastive):
        mask_known = params.pop("mask_known_triples")
        return cls(**params, known_pairs=known_pairs if mask_known else None, num_answers=num_answers,
                   kind=kind or "causal")
    return cls(**params)


__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput", "ObjectiveSettings", "TrainModule", "build_objective", "objective_class"]
