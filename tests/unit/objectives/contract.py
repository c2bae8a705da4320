"""The test case every objective inherits (as PyKEEN does for its models).

A subclass names its objective and provides a tiny model with random weights,
a batch, and an independent hand computation of the loss from the model's
raw outputs. The inherited tests check the value against that computation,
finiteness, gradients, that one optimiser step on the batch lowers the loss,
and that the docstring gives shapes. ``test_contract_coverage`` fails when an
objective in ``kgscale.objectives.OBJECTIVES`` has no subclass here.
"""
from __future__ import annotations

import math

import torch

from kgscale.objectives import OBJECTIVES, Objective


def log_softmax_list(row: list[float]) -> list[float]:
    m = max(row)
    lse = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - lse for x in row]


class ObjectiveContract:
    objective_name: str = ""
    tolerance = 1e-4

    # -- provided by subclasses
    def make_objective(self) -> Objective:
        raise NotImplementedError

    def make_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def make_batch(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def hand_loss(self, objective: Objective, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
        raise NotImplementedError

    # -- setup
    def _parts(self):
        torch.manual_seed(0)
        return self.make_objective(), self.make_model(), self.make_batch()

    # -- the contract
    def test_is_the_registered_objective(self):
        objective = self.make_objective()
        assert OBJECTIVES[self.objective_name] is type(objective)
        assert set(objective.batch_keys) <= set(self.make_batch())  # what this configuration reads

    def test_loss_matches_hand_computation(self):
        objective, model, batch = self._parts()
        with torch.no_grad():
            got = float(objective(model, batch).loss)
            want = self.hand_loss(objective, model, batch)
        assert math.isclose(got, want, rel_tol=self.tolerance, abs_tol=self.tolerance), (got, want)

    def test_loss_and_metrics_are_finite(self):
        objective, model, batch = self._parts()
        out = objective(model, batch)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert "loss" in out.metrics
        for name, value in out.metrics.items():
            assert not value.requires_grad, name
            assert math.isfinite(float(value)), name

    def test_gradients_reach_every_trainable_parameter(self):
        objective, model, batch = self._parts()
        objective(model, batch).loss.backward()
        params = [(n, p) for n, p in list(model.named_parameters()) + list(objective.named_parameters()) if p.requires_grad]
        assert params
        for name, p in params:
            if "embed" in name or "shared" in name or "lm_head" in name:
                continue  # only rows of the tokens in the batch get a gradient
            assert p.grad is not None, f"no gradient for {name}"
            assert torch.isfinite(p.grad).all(), name
        total = sum(float(p.grad.abs().sum()) for _, p in params if p.grad is not None)
        assert total > 0

    def test_one_optimiser_step_lowers_the_loss(self):
        objective, model, batch = self._parts()
        params = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-2)
        before = objective(model, batch).loss
        before.backward()
        opt.step()
        with torch.no_grad():
            after = objective(model, batch).loss
        assert float(after) < float(before), (float(before), float(after))

    def test_docstring_gives_shapes_and_equation(self):
        cls = OBJECTIVES[self.objective_name]
        import inspect

        text = (cls.__doc__ or "") + (inspect.getmodule(cls).__doc__ or "")
        assert "[B" in text, "the docstring must give tensor shapes like [B, T]"
        assert "L" in text and "=" in text, "the docstring must give the loss equation"
