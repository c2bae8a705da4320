from __future__ import annotations

import math

import pytest
import torch

from kgscale.objectives.kale import KALE, kale_loss
from tests.unit.objectives.contract import ObjectiveContract, log_softmax_list
from tests.unit.objectives.tiny import random_rows, right_padded, tiny_llama


def kale_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    questions = random_rows([4, 6, 3], gen)
    rationales = random_rows([5, 2, 7], gen)
    answers = random_rows([2, 3, 1], gen, eos=True)
    batch = {}
    for name, rows in (("with", [q + r + a for q, r, a in zip(questions, rationales, answers)]),
                       ("without", [q + a for q, a in zip(questions, answers)])):
        ids, mask = right_padded(rows)
        prompt_lengths = [len(r) - len(a) for r, a in zip(rows, answers)]
        labels, _ = right_padded([[-100] * p + a for p, a in zip(prompt_lengths, answers)], fill=-100)
        batch.update({f"{name}_input_ids": ids, f"{name}_attention_mask": mask, f"{name}_labels": labels})
    return batch


def answer_log_probs(model, batch, prefix) -> list[tuple[list[float], int]]:
    logits = model(input_ids=batch[f"{prefix}_input_ids"], attention_mask=batch[f"{prefix}_attention_mask"]).logits
    labels = batch[f"{prefix}_labels"]
    out = []
    for i in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            if int(labels[i, t]) != -100:
                out.append((log_softmax_list(logits[i, t - 1].tolist()), int(labels[i, t])))
    return out


class TestKALE(ObjectiveContract):
    objective_name = "kale"

    def make_objective(self):
        return KALE(kl_weight=0.7, rationale_ce_weight=0.3)

    def make_model(self):
        return tiny_llama()

    def make_batch(self):
        return kale_batch()

    def hand_loss(self, objective, model, batch):
        with_r = answer_log_probs(model, batch, "with")
        without = answer_log_probs(model, batch, "without")
        n = len(without)
        ce = -sum(lp[y] for lp, y in without) / n
        ce_with = -sum(lp[y] for lp, y in with_r) / n
        kl = sum(sum(math.exp(a) * (a - b) for a, b in zip(lw, lo)) for (lw, _), (lo, _) in zip(with_r, without)) / n
        return ce + 0.3 * ce_with + 0.7 * kl

    def test_kl_target_is_fixed(self):
        """Only the prediction without the rationale follows the KL term: with
        both CE weights 0, the loss gradient through the rationale view is 0."""
        logits_with = torch.randn(4, 7, requires_grad=True)
        logits_without = torch.randn(4, 7, requires_grad=True)
        loss, _ = kale_loss(logits_without, logits_with, torch.tensor([1, 2, 3, 4]), kl_weight=1.0, rationale_ce_weight=0.0)
        loss.backward()
        assert logits_with.grad is None or not logits_with.grad.any()
        assert logits_without.grad.abs().sum() > 0


def test_kale_loss_by_hand():
    # one answer token, vocabulary of 2
    without = torch.tensor([[0.0, 0.0]])  # p = (.5, .5)
    with_r = torch.tensor([[math.log(3.0), 0.0]])  # p^r = (.75, .25)
    loss, parts = kale_loss(without, with_r, torch.tensor([0]), kl_weight=2.0, rationale_ce_weight=1.0)
    ce = -math.log(0.5)
    ce_with = -math.log(0.75)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert math.isclose(float(parts["ce"]), ce, rel_tol=1e-6)
    assert math.isclose(float(parts["ce_with_rationale"]), ce_with, rel_tol=1e-6)
    assert math.isclose(float(parts["kl"]), kl, rel_tol=1e-5)
    assert math.isclose(float(loss), ce + ce_with + 2.0 * kl, rel_tol=1e-6)
    # identical predictions: no KL
    _, same = kale_loss(with_r, with_r, torch.tensor([0]), 1.0, 1.0)
    assert abs(float(same["kl"])) < 1e-7


def test_kale_refuses_different_answer_tokens():
    with pytest.raises(ValueError, match="answer"):
        kale_loss(torch.zeros(2, 3), torch.zeros(3, 3), torch.tensor([0, 1]), 1.0, 1.0)


def test_without_rationale_ce_the_rationale_view_builds_no_graph():
    """rationale_ce_weight 0: the same loss and gradients, and the view with
    the rationale is computed without a graph (no backward runs through it)."""
    batch = kale_batch()
    model = tiny_llama()
    seen = []
    handle = model.model.layers[0].register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled()))
    out = KALE(kl_weight=0.7, rationale_ce_weight=0.0)(model, batch)
    handle.remove()
    assert seen == [True, False]  # the view without the rationale, then the one with it
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    logits = {}
    for prefix in ("without", "with"):
        trunk_out = model(input_ids=batch[f"{prefix}_input_ids"], attention_mask=batch[f"{prefix}_attention_mask"]).logits
        mask = batch[f"{prefix}_labels"][:, 1:] != -100
        logits[prefix] = trunk_out[:, :-1][mask]
    targets = batch["without_labels"][:, 1:][batch["without_labels"][:, 1:] != -100]
    reference, _ = kale_loss(logits["without"], logits["with"], targets, kl_weight=0.7, rationale_ce_weight=0.0)
    assert torch.allclose(out.loss, reference, atol=1e-6)
    reference.backward()
    for n, g in grads.items():
        assert torch.allclose(g, dict(model.named_parameters())[n].grad, atol=1e-6), n
