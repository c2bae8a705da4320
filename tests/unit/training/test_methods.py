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


def test_a_method_names_only_data_fields_that_exist():
    from kgscale.train.config import DataSettings

    own = {f for m in METHODS.values() for f in m.data_fields}
    assert own and own <= set(DataSettings.model_fields)
    # the inputs and the common settings belong to no method
    assert not own & {"snapshot", "rationales", "split", "max_length", "seed", "max_samples"}
