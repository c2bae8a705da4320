"""Training objectives: one module a method, each a plain ``nn.Module``
(tensors in, loss and metrics out) with its settings and its wiring
(:class:`~kgscale.objectives.method.Method`) beside it.

``objective.name`` in a training config picks one:

- ``kalm``: KaLM explicit + implicit alignment (contrastive + lambda * LM)
- ``kalm_contrastive``: KaLM explicit alignment alone (dual-view contrastive)
- ``kalm_lm``: KaLM implicit alignment alone (triple completion LM)
- ``kale``: KALE knowledge-aware fine-tuning (CE + alpha * KL)
- ``kilm``: KILM generative knowledge infilling (encoder-decoder)

The registry below is the one list of them: one :func:`register` call an
objective name. :data:`OBJECTIVES` and :data:`METHODS` are views of it, and
the config's ``objective`` union (:func:`objective_settings`) and ``data``
section (:func:`kgscale.train.config.data_settings_model`) are built from it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union

import torch
from pydantic import BaseModel, Field

from kgscale.objectives import kale, kalm, kilm
from kgscale.objectives.base import Objective, ObjectiveOutput, TrainModule
from kgscale.objectives.kale import KALE, KALESettings
from kgscale.objectives.kalm import KaLM, KaLMCompletion, KaLMCompletionSettings, KaLMContrastive, KaLMContrastiveSettings, KaLMSettings
from kgscale.objectives.kilm import KILM, KILMSettings
from kgscale.objectives.method import Method


@dataclass(frozen=True)
class Registered:
    """One objective name: its module, its settings model (``objective:``
    section, discriminated by ``name``) and its wiring."""

    objective: type[Objective]
    settings: type[BaseModel]
    method: Method

    @property
    def name(self) -> str:
        return self.objective.name


#: objective.name -> what is registered under it, in registration order
REGISTRY: dict[str, Registered] = {}


def register(objective: type[Objective], settings: type[BaseModel], method: Method) -> Registered:
    """Register ``objective`` under its ``name`` with its settings model and
    its method. Configs validated by models built afterwards accept it
    (:func:`objective_settings`, :func:`kgscale.train.config.train_config_model`)."""
    name = objective.name
    if name in REGISTRY:
        raise ValueError(f"objective {name!r} is registered already")
    field = settings.model_fields.get("name")
    if field is None or field.default != name:
        raise ValueError(f"{settings.__name__}: its `name` field must be Literal[{name!r}] = {name!r}, "
                         f"the name of {objective.__name__}")
    entry = REGISTRY[name] = Registered(objective, settings, method)
    return entry


@contextlib.contextmanager
def registered(objective: type[Objective], settings: type[BaseModel], method: Method) -> Iterator[Registered]:
    """:func:`register` for the duration of a ``with`` block (tests): the
    registry is as it was afterwards."""
    before = dict(REGISTRY)
    try:
        yield register(objective, settings, method)
    finally:
        REGISTRY.clear()
        REGISTRY.update(before)


class _Column(Mapping):
    """name -> one attribute of each registered entry, read live."""

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def __getitem__(self, name: str) -> Any:
        return getattr(REGISTRY[name], self._attr)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


#: name -> objective class
OBJECTIVES: Mapping[str, type[Objective]] = _Column("objective")
#: name -> its method (the wiring around the loss)
METHODS: Mapping[str, Method] = _Column("method")


def _lookup(name: str) -> Registered:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; objectives are {', '.join(sorted(REGISTRY))}") from None


def objective_class(name: str) -> type[Objective]:
    return _lookup(name).objective


def method(name: str) -> Method:
    return _lookup(name).method


def objective_settings() -> Any:
    """The ``objective`` section's type: the registered settings models,
    told apart by ``name``."""
    models = tuple(e.settings for e in REGISTRY.values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="name")]


def build_objective(settings, *, known_pairs: torch.Tensor | None = None, num_answers: int | None = None,
                    kind: str | None = None) -> Objective:
    """The objective module for ``settings`` (:meth:`Objective.from_settings`:
    KaLM's contrastive objectives take the training graph's (query, answer)
    keys so true pairs are not negatives, the number of entities, and the
    backbone's kind)."""
    return objective_class(settings.name).from_settings(settings, known_pairs=known_pairs, num_answers=num_answers,
                                                        kind=kind)


# ---------------------------------------------------------------- the registry
# one line an objective name; a new method adds its module's line(s) here

register(KaLM, KaLMSettings, kalm.CONTRASTIVE_METHOD)
register(KaLMContrastive, KaLMContrastiveSettings, kalm.CONTRASTIVE_METHOD)
register(KaLMCompletion, KaLMCompletionSettings, kalm.COMPLETION_METHOD)
register(KALE, KALESettings, kale.METHOD)
register(KILM, KILMSettings, kilm.METHOD)

#: the ``objective`` section's type for the objectives above
ObjectiveSettings = objective_settings()


__all__ = ["METHODS", "OBJECTIVES", "REGISTRY", "Method", "Objective", "ObjectiveOutput", "ObjectiveSettings",
           "Registered", "TrainModule", "build_objective", "method", "objective_class", "objective_settings",
           "register", "registered"]
