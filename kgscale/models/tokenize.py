"""Tokenisation shared by training, evaluation and serving, so that a view is
cut and encoded the same way wherever it is embedded.

:func:`view_ids` is the one encoding of a view: the tokenizer's own special
tokens (BERT's ``[CLS] ... [SEP]``, Llama's BOS; SmolLM2 adds none), then,
for last-token pooling, EOS as the final id (the position KaLM pools).
:func:`query_view_texts` composes the (h, r) query strings with the entity
cut so that the relation always fits (FB15k-237's relation texts run to 17
words; a query cut at its end would lose the relation it asks about).
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from kgscale.kg.text import query_text, relation_text


class RememberedEncodings:
    """A tokenizer that remembers the ids of the texts it has encoded, per
    setting (special tokens, truncation, length), for sample tokenising: a
    KG's rows repeat each entity's text in every triple it takes part in
    (WN18RR's KaLM samples: 173,670 rows over 40,943 entity texts, each row
    encoding its entities three times), so most of a pass would encode
    strings it has encoded before. Batched calls on a list of strings with
    those settings are answered from memory where they can be, the rest go
    to the tokenizer in one call; anything else is the tokenizer's own. At
    most ``max_texts`` texts a setting are kept (then it starts afresh)."""

    _REMEMBERED = frozenset({"add_special_tokens", "truncation", "max_length"})

    def __init__(self, tokenizer, max_texts: int = 1 << 20) -> None:
        self._tokenizer = tokenizer
        self._max_texts = max_texts
        self._memory: dict[tuple, dict[str, list[int]]] = {}

    def __call__(self, texts, **kwargs):
        if not isinstance(texts, list) or not set(kwargs) <= self._REMEMBERED \
                or not all(isinstance(t, str) for t in texts):
            return self._tokenizer(texts, **kwargs)
        memory = self._memory.setdefault(tuple(sorted(kwargs.items())), {})
        new = list(dict.fromkeys(t for t in texts if t not in memory))
        if new:
            if len(memory) + len(new) > self._max_texts:
                memory.clear()
            memory.update(zip(new, self._tokenizer(new, **kwargs)["input_ids"]))
        return {"input_ids": [list(memory[t]) for t in texts]}

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)


@contextmanager
def _gc_paused():
    """Python's cyclic collector off while a batch's id lists are made: each
    text's ids are a new list, and with tens of thousands of them alive the
    collector's passes, which walk every live list, can cost as much as the
    tokenizer itself (:func:`view_ids` on 20,000 of WN18RR's views, timed
    alone: 24,000 texts/s with it on, 39,000 off; a whole tiny-model
    embedding of them, alternated five times: median 10,043 against 10,623
    texts/s). Lists of ints hold no cycles; it is switched back on after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def encode(tokenizer, texts: list[str], add_special_tokens: bool, max_length: int | None = None) -> list[list[int]]:
    """``tokenizer(texts, add_special_tokens=..., truncation=..., max_length=...)["input_ids"]``.

    A Hugging Face fast tokenizer is asked through its Rust backend's
    ``encode_batch_fast`` (no character offsets, no per-text conversion to a
    ``BatchEncoding``), with the truncation, padding and special-token
    settings its own call would give the backend: the same ids about twice as
    fast (WN18RR's views with SmolLM2's tokenizer, 2 threads: 47,000-50,000
    texts/s against 18,000-24,000), which for a small model is a large part
    of embedding. Anything else (a slow tokenizer, a wrapper such as
    :class:`RememberedEncodings`) is called as it is."""
    from transformers import PreTrainedTokenizerBase

    backend = getattr(tokenizer, "backend_tokenizer", None) \
        if isinstance(tokenizer, PreTrainedTokenizerBase) and tokenizer.is_fast else None
    if backend is None or not hasattr(backend, "encode_batch_fast") \
            or not hasattr(tokenizer, "set_truncation_and_padding"):
        cut = {"truncation": True, "max_length": max_length} if max_length else {}
        return tokenizer(texts, add_special_tokens=add_special_tokens, **cut)["input_ids"]
    from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy

    tokenizer.set_truncation_and_padding(
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        truncation_strategy=TruncationStrategy.LONGEST_FIRST if max_length else TruncationStrategy.DO_NOT_TRUNCATE,
        max_length=max_length, stride=0, pad_to_multiple_of=None, padding_side=None)
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.encode_special_tokens != split:
        backend.encode_special_tokens = split
    with _gc_paused():
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)]


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    if not len(texts):
        return []
    return encode(tokenizer, list(texts), add_special_tokens=False)


def truncate_texts(tokenizer, texts: Sequence[str], max_tokens: int | Sequence[int]) -> list[str]:
    """Each text cut to its first ``max_tokens`` tokens (one bound for all, or
    one a text), as a string (KaLM cuts entity texts at 50 tokens before
    composing a view)."""
    bounds = [max_tokens] * len(texts) if isinstance(max_tokens, (int, np.integer)) else list(max_tokens)
    out = []
    for text, ids, bound in zip(texts, token_ids(tokenizer, texts), bounds):
        out.append(text if len(ids) <= bound else
                   tokenizer.decode(ids[:max(1, int(bound))], clean_up_tokenization_spaces=False))
    return out


def special_count(tokenizer, append_eos: bool) -> int:
    """Ids :func:`view_ids` adds around a text's own tokens."""
    added = len(tokenizer("a", add_special_tokens=True)["input_ids"]) - len(tokenizer("a", add_special_tokens=False)["input_ids"])
    return added + int(append_eos)


def view_ids(tokenizer, texts: Sequence[str], max_length: int | None, append_eos: bool) -> list[list[int]]:
    """Token ids of each view as every embedding path reads it: with the
    tokenizer's own special tokens, cut to ``max_length`` ids, and with
    ``append_eos`` ending with EOS (the text is cut, EOS is always last)."""
    if not len(texts):
        return []
    if append_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token, which last-token pooling needs")
        ids = encode(tokenizer, list(texts), True, max_length - 1 if max_length else None)
        eos = tokenizer.eos_token_id
        with _gc_paused():
            return [x if x and x[-1] == eos else x + [eos] for x in ids]
    return encode(tokenizer, list(texts), True, max_length)


def encode_with_eos(tokenizer, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """:func:`view_ids` with EOS, as int32 arrays (training's sample columns)."""
    return [np.asarray(x, dtype=np.int32) for x in view_ids(tokenizer, texts, max_length, append_eos=True)]


# a BPE may merge across the seam of entity and relation: leave this much room
_SEAM = 2


def query_view_texts(tokenizer, entity_texts: Sequence[str], relation_texts: Sequence[str], inverse: Sequence[bool],
                     max_entity_tokens: int | None, max_length: int | None, append_eos: bool) -> list[str]:
    """The (h, r) query views (:func:`kgscale.kg.text.query_text`) with each
    entity text cut to ``max_entity_tokens`` and further where needed so that
    the whole view, relation included, fits ``max_length`` ids."""
    n = len(entity_texts)
    bound = np.full(n, max_entity_tokens if max_entity_tokens is not None else 1 << 30, dtype=np.int64)
    if max_length is not None and n:
        tails = [" ; " + relation_text(r, bool(i)) for r, i in zip(relation_texts, inverse)]
        room = max_length - special_count(tokenizer, append_eos) - _SEAM
        rel_len = np.array([len(x) for x in token_ids(tokenizer, tails)], dtype=np.int64)
        bound = np.minimum(bound, np.maximum(1, room - rel_len))
    ents = truncate_texts(tokenizer, list(entity_texts), bound)
    return [query_text(e, r, bool(i)) for e, r, i in zip(ents, relation_texts, inverse)]
