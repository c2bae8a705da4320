"""Paths as text: the compact path string, and the deterministic rationale.

A path is written from its source entity to its answer entity with the
direction of every step visible::

    revolving door --hypernym--> door <--has part-- bank

``a <--r-- b`` means the triple (b, r, a): the step walked it backwards.

:func:`verbalise_rationale` is the fallback teacher: it states each step as
the triple it rests on, in the KG's own direction, and ends with the answer.
It is deterministic, mentions every entity of its paths, and needs no model.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def arrow_texts(relation_texts: list[str]) -> list[str]:
    """Step separators, indexed by ``2 * relation + inverse``."""
    out = []
    for text in relation_texts:
        out.append(f" --{text}--> ")
        out.append(f" <--{text}-- ")
    return out


def path_texts(nodes: np.ndarray, relation: np.ndarray, inverse: np.ndarray, hops: np.ndarray,
               entity_names: pa.Array, arrows: pa.Array) -> pa.Array:
    """One string per path, built with Arrow kernels (no Python loop per path).

    ``nodes`` [P, H+1], ``relation``/``inverse`` [P, H] (valid for the first
    ``hops[p]`` steps). Tokens of a path: name, arrow, name, ..., name.
    """
    p = len(hops)
    if p == 0:
        return pa.array([], pa.string())
    n_names = len(entity_names)
    h = nodes.shape[1] - 1
    # token ids on a [P, 2H+1] grid: names at even columns, arrows at odd ones
    grid = np.full((p, 2 * h + 1), -1, dtype=np.int64)
    grid[:, 0::2] = nodes
    grid[:, 1::2] = n_names + 2 * relation.astype(np.int64) + inverse.astype(np.int64)
    width = 2 * hops + 1
    keep = np.arange(2 * h + 1)[None, :] < width[:, None]
    ids = grid[keep]
    table = pa.concat_arrays([entity_names.cast(pa.large_string()), arrows.cast(pa.large_string())])
    tokens = table.take(pa.array(ids))
    offsets = np.zeros(p + 1, dtype=np.int32)
    np.cumsum(width, out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), tokens)
    return pc.binary_join(lists, pa.scalar("", pa.large_string())).cast(pa.string())


def step_sentences(path: dict) -> list[str]:
    """Each step of a path (a row of the ``paths`` column) as its triple, in KG direction."""
    names = path["names"]
    out = []
    for i, (rel, inv) in enumerate(zip(path["relation_texts"], path["inverse"])):
        head, tail = (names[i + 1], names[i]) if inv else (names[i], names[i + 1])
        out.append(f"{head} {rel} {tail}")
    return out


def verbalise_rationale(question: str, answer: str, paths: list[dict]) -> str:
    """A rationale from the paths alone, for when no teacher model is configured."""
    if not paths:
        return f"The knowledge graph gives no path for this question; the answer is {answer}."
    parts = []
    for path in paths:
        facts = "; ".join(step_sentences(path))
        names = path["names"]
        part = f"{names[0]} leads to {names[-1]}: {facts}."
        if part not in parts:  # distinct paths can read the same when entities share a name
            parts.append(part)
    return " ".join(parts) + f" So the answer is {answer}."


def format_paths(paths: list[dict]) -> str:
    """Paths for a prompt: one per line, numbered."""
    return "\n".join(f"{i + 1}. {p['text']}" for i, p in enumerate(paths))


def format_facts(paths: list[dict]) -> str:
    """Every step of the paths as a triple sentence, once each, one a line."""
    seen: list[str] = []
    for path in paths:
        for sentence in step_sentences(path):
            if sentence not in seen:
                seen.append(sentence)
    return "\n".join(f"- {s}" for s in seen)
