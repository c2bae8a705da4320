"""Fails when an objective has no test case inheriting the shared contract."""
from __future__ import annotations

import importlib
import pkgutil

import tests.unit.objectives as pkg
from kgscale.objectives import OBJECTIVES
from tests.unit.objectives.contract import ObjectiveContract


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_objective_inherits_the_contract():
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("test_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    covered = {c.objective_name for c in _subclasses(ObjectiveContract) if c.__name__.startswith("Test")}
    missing = set(OBJECTIVES) - covered
    assert not missing, f"objectives without a contract test case: {sorted(missing)}"
