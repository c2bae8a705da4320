"""Errors of the evaluation stages that the CLI reports without a traceback."""
from __future__ import annotations

from kgscale.errors import UserError


class EvalInputError(UserError, ValueError):
    """The input cannot be evaluated (no test split, nothing left to rank, no questions)."""
