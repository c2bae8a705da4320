"""Every objective has its wiring (kgscale.train.methods), and the wiring is
what the driver and `kgscale run` act on."""
from __future__ import annotations

import pytest

from kgscale.objectives import OBJECTIVES
from kgscale.train.methods import METHODS, method


def test_every_objective_has_a_method_and_no_method_is_orphaned():
    assert set(METHODS) == set(OBJECTIVES)
    assert {n for n, m in METHODS.items() if m.input == "rationales"} == {"kale"}
    with pytest.raises(ValueError, match="unknown objective 'nope'; objectives are kale, kalm"):
        method("nope")
