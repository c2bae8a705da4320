"""KALE's knowledge-induced data synthesis: questions linked to (or synthesised
from) the KG, multi-hop paths between their entities, teacher rationales."""

from kgscale.errors import UserError


class SynthInputError(UserError, ValueError):
    """An input of a synthesis stage is missing or malformed; the message says which."""
