"""The base of kgscale's user errors.

Every error that a user can cause and fix (a bad config key, a missing file,
an output that already exists, no Ray cluster at the configured address)
derives from :class:`UserError` and keeps its built-in base too
(``class ConfigError(UserError, ValueError)``), so ``except ValueError``
elsewhere still catches it. The CLI (:func:`kgscale.cli.main`) catches
``UserError`` alone: a new error class that derives from it is reported like
the others without being listed anywhere.

This module imports nothing from the rest of the package, so any module can
import it without an import cycle.
"""
from __future__ import annotations


class UserError(Exception):
    """Errors caused by input or configuration.

    They are reported to the user with a message naming the problem, never a
    traceback: the CLI prints ``kgscale CMD: error: MESSAGE`` on stderr and
    exits with status 2. The message should say what is wrong and, where it
    can, what to change.
    """


__all__ = ["UserError"]
