"""Tokenisation helpers shared by training, evaluation and serving, so that a
view is cut and encoded the same way wherever it is embedded.

Tokenizers here are Hugging Face fast tokenizers; none of these helpers adds
the tokenizer's own special tokens (SmolLM2's adds none anyway): sequences are
assembled explicitly, so the position of EOS, which KaLM pools, is certain.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    if not len(texts):
        return []
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def truncate_texts(tokenizer, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Each text cut to its first ``max_tokens`` tokens, as a string (KaLM cuts
    entity texts at 50 tokens before composing a view)."""
    out = []
    for text, ids in zip(texts, token_ids(tokenizer, texts)):
        out.append(text if len(ids) <= max_tokens else
                   tokenizer.decode(ids[:max_tokens], clean_up_tokenization_spaces=False))
    return out


def encode_with_eos(tokenizer, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Ids of each text followed by EOS, at most ``max_length`` ids (the text
    is cut, EOS is always last: it is the position KaLM pools)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token, which last-token pooling needs")
    return [np.asarray(ids[: max_length - 1] + [eos], dtype=np.int32) for ids in token_ids(tokenizer, texts)]
