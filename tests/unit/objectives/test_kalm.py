from __future__ import annotations

import math

import pytest
import torch

from kgscale.objectives.kalm import KaLM, KaLMCompletion, KaLMContrastive, info_nce, true_pair_mask
from tests.unit.objectives.contract import ObjectiveContract, log_softmax_list
from tests.unit.objectives.tiny import random_rows, right_padded, tiny_llama, with_lora

NUM_ANSWERS = 100
QUERY_IDS = [10, 10, 11, 12]  # rows 0 and 1 ask the same query
ANSWER_IDS = [5, 6, 7, 5]  # rows 0 and 3 show the same tail entity
KNOWN = {(11, 6)}  # a training triple: key 1 also answers query 11


def kalm_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    q_ids, q_mask = right_padded(random_rows([5, 3, 4, 6], gen, eos=True))
    k_ids, k_mask = right_padded(random_rows([3, 4, 2, 5], gen, eos=True))
    prompts = random_rows([4, 3, 5, 2], gen)
    completions = random_rows([2, 3, 1, 2], gen, eos=True)
    lm_ids, lm_mask = right_padded([p + c for p, c in zip(prompts, completions)])
    labels, _ = right_padded([[-100] * len(p) + c for p, c in zip(prompts, completions)], fill=-100)
    return {"query_input_ids": q_ids, "query_attention_mask": q_mask, "key_input_ids": k_ids,
            "key_attention_mask": k_mask, "query_id": torch.tensor(QUERY_IDS), "answer_id": torch.tensor(ANSWER_IDS),
            "lm_input_ids": lm_ids, "lm_attention_mask": lm_mask, "lm_labels": labels}


def known_tensor() -> torch.Tensor:
    return torch.tensor([q * NUM_ANSWERS + a for q, a in KNOWN])


def eos_vectors(model, ids, mask) -> list[list[float]]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    out = []
    for i, n in enumerate(mask.sum(1).tolist()):
        v = hidden[i, n - 1].tolist()
        norm = math.sqrt(sum(x * x for x in v))
        out.append([x / norm for x in v])
    return out


def hand_contrastive(q, k, margin, inv_t) -> float:
    true = set(zip(QUERY_IDS, ANSWER_IDS)) | KNOWN
    b = len(q)

    def direction(anchors, cands, is_true):
        total = 0.0
        for i in range(b):
            logits = {}
            for j in range(b):
                if j != i and is_true(i, j):
                    continue
                s = sum(x * y for x, y in zip(anchors[i], cands[j])) - (margin if i == j else 0.0)
                logits[j] = s * inv_t
            lsm = log_softmax_list(list(logits.values()))
            total -= lsm[list(logits).index(i)]
        return total / b

    hr_t = direction(q, k, lambda i, j: (QUERY_IDS[i], ANSWER_IDS[j]) in true)
    t_hr = direction(k, q, lambda i, j: (QUERY_IDS[j], ANSWER_IDS[i]) in true)
    return (hr_t + t_hr) / 2


def hand_completion(model, batch) -> float:
    logits = model(input_ids=batch["lm_input_ids"], attention_mask=batch["lm_attention_mask"]).logits
    labels = batch["lm_labels"]
    losses = []
    for i in range(labels.shape[0]):
        for t in range(1, labels.shape[1]):
            y = int(labels[i, t])
            if y != -100:
                losses.append(-log_softmax_list(logits[i, t - 1].tolist())[y])
    return sum(losses) / len(losses)


class TestKaLMContrastive(ObjectiveContract):
    objective_name = "kalm_contrastive"

    def make_objective(self):
        return KaLMContrastive(margin=0.02, temperature=0.05, known_pairs=known_tensor(), num_answers=NUM_ANSWERS)

    def make_model(self):
        return tiny_llama()

    def make_batch(self):
        return kalm_batch()

    def hand_loss(self, objective, model, batch):
        q = eos_vectors(model, batch["query_input_ids"], batch["query_attention_mask"])
        k = eos_vectors(model, batch["key_input_ids"], batch["key_attention_mask"])
        return hand_contrastive(q, k, 0.02, 1 / 0.05)


class TestKaLMContrastiveLoRA(TestKaLMContrastive):
    """The same objective through a peft LoRA model on the MLP projections."""

    def make_model(self):
        return with_lora(tiny_llama(), ["gate_proj", "up_proj", "down_proj"])

    def test_only_adapters_and_temperature_train(self):
        objective, model, batch = self._parts()
        objective(model, batch).loss.backward()
        trained = {n for n, p in model.named_parameters() if p.grad is not None}
        assert trained and all("lora_" in n for n in trained)
        assert objective.log_inv_temperature.grad is not None


class TestKaLMCompletion(ObjectiveContract):
    objective_name = "kalm_lm"

    def make_objective(self):
        return KaLMCompletion()

    def make_model(self):
        return tiny_llama()

    def make_batch(self):
        return kalm_batch()

    def hand_loss(self, objective, model, batch):
        return hand_completion(model, batch)


class TestKaLM(ObjectiveContract):
    objective_name = "kalm"

    def make_objective(self):
        return KaLM(lm_weight=0.5, margin=0.02, temperature=0.05, known_pairs=known_tensor(), num_answers=NUM_ANSWERS)

    def make_model(self):
        return tiny_llama()

    def make_batch(self):
        return kalm_batch()

    def hand_loss(self, objective, model, batch):
        q = eos_vectors(model, batch["query_input_ids"], batch["query_attention_mask"])
        k = eos_vectors(model, batch["key_input_ids"], batch["key_attention_mask"])
        return hand_contrastive(q, k, 0.02, 20.0) + 0.5 * hand_completion(model, batch)

    def test_metrics_report_each_part(self):
        objective, model, batch = self._parts()
        m = objective(model, batch).metrics
        assert {"contrastive", "lm", "temperature", "accuracy"} <= set(m)
        assert math.isclose(float(m["temperature"]), 0.05, rel_tol=1e-5)
        assert math.isclose(float(m["loss"]), float(m["contrastive"]) + 0.5 * float(m["lm"]), rel_tol=1e-5)


def test_info_nce_by_hand():
    # two anchors, two candidates; cosines 1.0 / 0.6 and 0.0 / 0.8
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    m, inv_t = 0.1, torch.tensor(10.0)
    loss, logits = info_nce(a, c, torch.tensor([0, 1]), None, m, inv_t)
    row0 = -math.log(math.exp(9.0) / (math.exp(9.0) + math.exp(6.0)))  # (1 - .1) * 10, .6 * 10
    row1 = -math.log(math.exp(7.0) / (math.exp(0.0) + math.exp(7.0)))  # 0, (.8 - .1) * 10
    assert math.isclose(float(loss), (row0 + row1) / 2, rel_tol=1e-5)
    assert torch.allclose(logits, torch.tensor([[9.0, 6.0], [0.0, 7.0]]))
    # excluding candidate 1 for anchor 0 leaves only its positive: loss 0 for that row
    loss_ex, _ = info_nce(a, c, torch.tensor([0, 1]), torch.tensor([[False, True], [False, False]]), m, inv_t)
    assert math.isclose(float(loss_ex), row1 / 2, abs_tol=1e-6)


def test_true_pair_mask_in_batch_and_known():
    q, a = torch.tensor(QUERY_IDS), torch.tensor(ANSWER_IDS)
    mask = true_pair_mask(q, a, q, a, known_tensor(), NUM_ANSWERS)
    want = [[(qi, aj) in set(zip(QUERY_IDS, ANSWER_IDS)) | KNOWN for aj in ANSWER_IDS] for qi in QUERY_IDS]
    assert mask.tolist() == want
    assert mask[0, 1] and mask[1, 0]  # same query, other answer
    assert mask[3, 0]  # key 0 shows entity 5, which answers query 12
    assert mask[2, 1]  # known training triple
    assert not mask[2, 0]


def test_temperature_is_learned_and_reported():
    obj = KaLMContrastive(temperature=0.1, learn_temperature=True)
    assert obj.log_inv_temperature.requires_grad
    fixed = KaLMContrastive(temperature=0.1, learn_temperature=False)
    assert not any(p is fixed.log_inv_temperature for p in fixed.parameters())
    assert math.isclose(fixed.summarize_state(fixed.state_dict())["temperature"], 0.1, rel_tol=1e-6)


def test_known_pairs_need_num_answers():
    with pytest.raises(ValueError, match="num_answers"):
        KaLMContrastive(known_pairs=torch.tensor([1, 2]))
