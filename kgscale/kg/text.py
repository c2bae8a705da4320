"""How entities, relations and queries are written as text.

One place, so that training (KaLM's two views), evaluation and serving embed
exactly the same strings. KaLM (Dai et al. 2024) uses "name: description"
for an entity and "name: description ; relation" for a (head, relation)
query; head prediction asks (tail, inverse relation).
"""
from __future__ import annotations

INVERSE_PREFIX = "inverse "


def entity_text(name: str | None, description: str | None) -> str:
    """The tail view of an entity: ``"name: description"`` (either part may be missing)."""
    name = (name or "").strip()
    description = (description or "").strip()
    if name and description:
        return f"{name}: {description}"
    return name or description


def relation_text(text: str, inverse: bool = False) -> str:
    return f"{INVERSE_PREFIX}{text}" if inverse else text


def query_text(entity: str, relation: str, inverse: bool = False) -> str:
    """The head-plus-relation view: ``"<entity text> ; <relation text>"``.

    ``entity`` is an :func:`entity_text`; ``inverse`` asks for heads given a tail.
    """
    return f"{entity} ; {relation_text(relation, inverse)}"
