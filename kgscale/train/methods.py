"""What each training method needs around its loss, in one place.

An objective (:mod:`kgscale.objectives`) is tensors in, loss out. Around it a
training run needs to know which upstream output the method reads (a
snapshot, or the rationale stage's questions), how its text rows are built
and tokenised, what its tokenizer must have, and what the workers get besides
the data (KaLM's entity count, known triples and entity bank). Those choices
are a :class:`Method`, one entry of :data:`METHODS` per ``objective.name``,
so the driver, the sample pipeline and ``kgscale run`` ask the method instead
of testing the objective's name.

Adding a fourth method: its objective module and settings in
``kgscale/objectives/`` (registered there), its sample builder and tokeniser
in ``kgscale/samples/``, its own ``data`` fields in
:class:`kgscale.train.config.DataSettings`, and one :class:`Method` here
naming them (``data_fields``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

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
    #: (cfg, tokenizer) -> None, raising ConfigError for a tokenizer the method cannot use
    check_tokenizer: Callable | None = None
    #: (cfg, preflight, timer) -> extra entries for the workers' ``info``
    worker_info: Callable | None = None
    #: the ``data`` fields only this method reads (the rest are every
    #: method's); another method's config that sets one is refused
    data_fields: tuple[str, ...] = ()


# ---------------------------------------------------------------- KaLM

def _kalm_samples(cfg, snapshot, rejects):
    from kgscale.samples.kalm import kalm_samples

    return kalm_samples(snapshot, cfg.data.split, cfg.data.inverse, rejects)


def _kalm_tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KaLMTokenize

    d = cfg.data
    return KaLMTokenize, {**base, "max_entity_length": d.max_entity_length, "lm_prompt": d.lm_prompt,
                          "views": tuple(sorted(cfg.objective.views())), "append_eos": kind == "causal"}


def _kalm_contrastive_info(cfg, pre, timer) -> dict:
    """The entity count, the training graph's (query, answer) keys (true pairs
    are no negatives) and, with ``objective.entity_bank``, the bank."""
    import ray

    from kgscale.samples.kalm import known_pair_keys
    from kgscale.train.bank import entity_bank

    info: dict = {"num_answers": pre.snapshot.num_entities}
    if cfg.objective.mask_known_triples:
        info["known_pairs"] = ray.put(known_pair_keys(pre.snapshot, ("train",), cfg.data.inverse))
    if cfg.objective.entity_bank:
        with timer("bank"):
            info.update(entity_bank(cfg, pre))
    return info


KALM_DATA = ("max_entity_length", "inverse", "lm_prompt")
KALM_CONTRASTIVE = Method("snapshot", _kalm_samples, _kalm_tokenizer, worker_info=_kalm_contrastive_info,
                          data_fields=KALM_DATA)
KALM_LM = Method("snapshot", _kalm_samples, _kalm_tokenizer, data_fields=KALM_DATA)


# ---------------------------------------------------------------- KALE

def _kale_samples(cfg, snapshot, rejects):
    from kgscale.samples.kale import kale_samples

    d = cfg.data
    return kale_samples(d.rationales, d.skip_flagged, rejects, d.questions, d.questions_part)


def _kale_tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KALETokenize

    return KALETokenize, base


KALE = Method("rationales", _kale_samples, _kale_tokenizer,
              data_fields=("skip_flagged", "questions", "questions_part"))


# ---------------------------------------------------------------- KILM

def _kilm_samples(cfg, snapshot, rejects):
    from kgscale.samples.kilm import kilm_samples

    return kilm_samples(snapshot, cfg.data.neighbours, cfg.data.seed, rejects)


def _kilm_tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KILMTokenize

    d = cfg.data
    return KILMTokenize, {**base, "decoder_start_token_id": decoder_start_token_id, "mask_ratio": d.mask_ratio,
                          "poisson_lambda": d.poisson_lambda, "max_description_length": d.max_description_length,
                          "seed": d.seed}


def _kilm_check_tokenizer(cfg, tokenizer) -> None:
    from kgscale.config import ConfigError

    if tokenizer.mask_token_id is None:
        raise ConfigError(f"model.model: KILM needs a tokenizer with a mask token; {cfg.model.model!r} has none")


KILM = Method("snapshot", _kilm_samples, _kilm_tokenizer, check_tokenizer=_kilm_check_tokenizer,
              data_fields=("neighbours", "mask_ratio", "poisson_lambda", "max_description_length"))


#: objective.name -> its method
METHODS: dict[str, Method] = {"kalm": KALM_CONTRASTIVE, "kalm_contrastive": KALM_CONTRASTIVE, "kalm_lm": KALM_LM,
                              "kale": KALE, "kilm": KILM}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; objectives are {', '.join(sorted(METHODS))}") from None


def foreign_data_settings(name: str, data) -> str | None:
    """Why ``data`` (a DataSettings) does not suit objective ``name``: a field
    that only other methods read, set away from its default (a recorded
    config, which writes every default, is taken back as it is); None when
    it suits."""
    own = set(method(name).data_fields)
    for field, info in type(data).model_fields.items():
        if field in own or getattr(data, field) == info.get_default(call_default_factory=True):
            continue
        owners = sorted(n for n, m in METHODS.items() if field in m.data_fields)
        if owners:
            return (f"data.{field} is a setting of objective {' / '.join(owners)}, which objective {name} does not "
                    f"read; remove it (objective {name} reads data.{', data.'.join(method(name).data_fields) or '...'} "
                    "besides every method's settings)")
    return None
