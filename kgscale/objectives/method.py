"""What a training method needs around its loss.

An objective (:class:`kgscale.objectives.base.Objective`) is tensors in, loss
out. Around it a training run needs to know which upstream output the method
reads (a snapshot, or the rationale stage's questions), which ``data``
settings it reads besides every method's, how its text rows are built and
tokenised, what its tokenizer must have, and what the workers get besides
the data (KaLM's entity count, known triples and entity bank). Those choices
are a :class:`Method`, declared in the objective's own module next to its
loss and registered with it (:func:`kgscale.objectives.register`), so that
the driver, the sample pipeline, the ``data`` section and ``kgscale run`` ask
the method instead of testing the objective's name.

The callables import :mod:`kgscale.samples` and :mod:`kgscale.train` inside
their bodies: importing an objective stays as light as its loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel

Input = Literal["snapshot", "rationales"]


@dataclass(frozen=True)
class Method:
    #: the upstream output the samples come from: ``data.snapshot`` (a
    #: directory of `kgscale ingest`) or ``data.rationales`` (of `kgscale rationales`)
    input: Input
    #: (cfg, snapshot or None, rejects) -> text rows (a pyarrow Table)
    samples: Callable
    #: (cfg, common tokeniser kwargs, decoder_start_token_id, backbone kind) ->
    #: (tokeniser callable class, its kwargs)
    tokenizer: Callable
    #: the ``data`` settings only this method reads, a StrictModel whose fields
    #: (defaults, bounds, validators) become fields of the ``data`` section
    #: (:class:`kgscale.train.config.DataSettings`); another method's config
    #: that sets one away from its default is refused
    data: type[BaseModel]
    #: (cfg, tokenizer) -> None, raising ConfigError for a tokenizer the method cannot use
    check_tokenizer: Callable | None = None
    #: (cfg, preflight, timer) -> extra entries for the workers' ``info``
    worker_info: Callable | None = None

    @property
    def data_fields(self) -> tuple[str, ...]:
        """The names of the ``data`` fields only this method reads."""
        return tuple(self.data.model_fields)
