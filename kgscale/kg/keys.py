"""Readable text from keys: the fallback when a graph gives no label.

Graph sources (RDF, Neo4j) name entities and relations by keys: IRIs,
skolemised blank nodes, relationship types. When the data carries no label
for a key, its *local name* stands in:

- an entity gets the local name as written, percent-decoded, with
  underscores as spaces (``.../resource/Barack_Obama`` -> ``Barack Obama``);
- a relation gets its local name split into lower-case words
  (``.../ontology/birthPlace`` -> ``birth place``, ``BORN_IN`` -> ``born in``).
"""
from __future__ import annotations

import re
from urllib.parse import unquote

import pyarrow as pa

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def local_name(key: str) -> str:
    """The part of a key after its last ``#``, ``/`` or ``:`` (the whole key
    when that part is empty), percent-decoded."""
    stripped = key.rstrip("/#:")
    for sep in ("#", "/", ":"):
        i = stripped.rfind(sep)
        if i >= 0:
            tail = stripped[i + 1 :]
            if tail:
                return unquote(tail)
    return unquote(stripped or key)


def entity_name_from_key(key: str) -> str:
    return " ".join(local_name(key).replace("_", " ").split()) or key


def relation_text_from_key(key: str) -> str:
    """``birthPlace`` -> ``birth place``; ``BORN_IN`` -> ``born in``."""
    words = _CAMEL.sub(" ", local_name(key))
    text = _SEPARATORS.sub(" ", words).strip().lower()
    return text or key


def entity_names_from_keys(keys: pa.Array) -> pa.Array:
    return pa.array([entity_name_from_key(k) for k in keys.to_pylist()], pa.string())
