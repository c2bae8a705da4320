"""What each training method needs around its loss: the registry's view.

Each objective module in :mod:`kgscale.objectives` declares its own
:class:`~kgscale.objectives.method.Method` (input, sample builder, tokeniser,
tokenizer check, worker inputs, its own ``data`` settings model) beside its
loss, and :mod:`kgscale.objectives` registers it under the objective's name.
:data:`METHODS` and :func:`method` are that registry, so the driver, the
sample pipeline and ``kgscale run`` ask the method instead of testing the
objective's name; :func:`foreign_data_settings` reads each method's ``data``
model to refuse a setting the chosen objective does not read.
"""
from __future__ import annotations

from kgscale.objectives import METHODS, method
from kgscale.objectives.method import Input, Method


def foreign_data_settings(name: str, data) -> str | None:
    """Why ``data`` (a DataSettings) does not suit objective ``name``: a field
    that only other methods read, set away from its default (a recorded
    config, which writes every default, is taken back as it is); None when
    it suits."""
    own = method(name).data_fields
    for field, info in type(data).model_fields.items():
        if field in own or getattr(data, field) == info.get_default(call_default_factory=True):
            continue
        owners = sorted(n for n, m in METHODS.items() if field in m.data_fields)
        if owners:
            return (f"data.{field} is a setting of objective {' / '.join(owners)}, which objective {name} does not "
                    f"read; remove it (objective {name} reads data.{', data.'.join(own) or '...'} "
                    "besides every method's settings)")
    return None


__all__ = ["METHODS", "Input", "Method", "foreign_data_settings", "method"]
