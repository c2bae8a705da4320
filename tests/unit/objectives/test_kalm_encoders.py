"""KaLM's explicit alignment beyond one causal LM: encoders (mean pooling),
SimKGC's self-negatives, two towers and the bank of every entity's key view.
Each case inherits the shared contract, so each loss is checked against an
independent computation from the models' raw outputs."""
from __future__ import annotations

import math

import pytest
import torch

from kgscale.models.towers import TwoTowers
from kgscale.objectives.kalm import KaLMContrastive, KaLMContrastiveSettings, known_answers
from tests.unit.objectives.contract import ObjectiveContract, log_softmax_list
from tests.unit.objectives.test_kalm import ANSWER_IDS, KNOWN, NUM_ANSWERS, QUERY_IDS, kalm_batch, known_tensor
from tests.unit.objectives.tiny import random_rows, right_padded, tiny_bert

HEAD_IDS = [3, 3, 4, 8]  # the query's own entity (rows 0, 1 share it)
# (query 12, entity 8) is a known pair: the head of row 3 answers its own query,
# as a reflexive triple (h, r, h) would; its self-negative must be masked
KNOWN_SELF = {(12, 8)}


def mean_vectors(model, ids, mask) -> list[list[float]]:
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    out = []
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        v = [sum(float(hidden[i, t, d]) for t in range(n)) / n for d in range(hidden.shape[-1])]
        norm = math.sqrt(sum(x * x for x in v))
        out.append([x / norm for x in v])
    return out


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def ce(logits: dict, target) -> float:
    lsm = log_softmax_list(list(logits.values()))
    return -lsm[list(logits).index(target)]


def encoder_batch(with_heads: bool) -> dict[str, torch.Tensor]:
    batch = kalm_batch()
    batch["head_id"] = torch.tensor(HEAD_IDS)
    if with_heads:
        gen = torch.Generator().manual_seed(5)
        batch["head_input_ids"], batch["head_attention_mask"] = right_padded(random_rows([4, 4, 3, 5], gen))
    return batch


def hand_two_directions(q, cands, cand_entity, target_col, k_anchor, margin, inv_t, known) -> float:
    """hr -> t over ``cands`` (entity ids ``cand_entity``); t -> hr in-batch."""
    true = set(zip(QUERY_IDS, ANSWER_IDS)) | known
    b = len(q)
    hr_t = 0.0
    for i in range(b):
        logits = {}
        for j, (c, e) in enumerate(zip(cands, cand_entity)):
            if j != target_col[i] and (QUERY_IDS[i], e) in true:
                continue
            logits[j] = (dot(q[i], c) - (margin if j == target_col[i] else 0.0)) * inv_t
        hr_t += ce(logits, target_col[i])
    t_hr = 0.0
    for i in range(b):
        logits = {}
        for j in range(b):
            if j != i and (QUERY_IDS[j], ANSWER_IDS[i]) in true:
                continue
            logits[j] = (dot(k_anchor[i], q[j]) - (margin if j == i else 0.0)) * inv_t
        t_hr += ce(logits, i)
    return (hr_t / b + t_hr / b) / 2


class TestKaLMContrastiveEncoder(ObjectiveContract):
    """An encoder backbone, mean pooling, in-batch negatives."""

    objective_name = "kalm_contrastive"

    def make_objective(self):
        return KaLMContrastive(known_pairs=known_tensor(), num_answers=NUM_ANSWERS, kind="encoder")

    def make_model(self):
        return tiny_bert()

    def make_batch(self):
        return encoder_batch(with_heads=False)

    def hand_loss(self, objective, model, batch):
        q = mean_vectors(model, batch["query_input_ids"], batch["query_attention_mask"])
        k = mean_vectors(model, batch["key_input_ids"], batch["key_attention_mask"])
        return hand_two_directions(q, k, ANSWER_IDS, list(range(4)), k, 0.02, 20.0, KNOWN)


class TestKaLMContrastiveSelfNegatives(ObjectiveContract):
    """Each query is also scored against every head view of the batch, its own
    included (SimKGC's self-negative), except where (query, head) is true."""

    objective_name = "kalm_contrastive"

    def make_objective(self):
        known = torch.tensor([q * NUM_ANSWERS + a for q, a in KNOWN | KNOWN_SELF])
        return KaLMContrastive(known_pairs=known, num_answers=NUM_ANSWERS, kind="encoder", self_negatives="no_grad")

    def make_model(self):
        return tiny_bert()

    def make_batch(self):
        return encoder_batch(with_heads=True)

    def hand_loss(self, objective, model, batch):
        q = mean_vectors(model, batch["query_input_ids"], batch["query_attention_mask"])
        k = mean_vectors(model, batch["key_input_ids"], batch["key_attention_mask"])
        h = mean_vectors(model, batch["head_input_ids"], batch["head_attention_mask"])
        return hand_two_directions(q, k + h, ANSWER_IDS + HEAD_IDS, list(range(4)), k, 0.02, 20.0, KNOWN | KNOWN_SELF)

    def test_known_self_pair_is_masked(self):
        """Row 3's own head answers its query (a known (h, r, h)): no negative.
        Row 0's head is: a head view equal to its query raises the loss."""
        objective, model, batch = self._parts()
        _, _, h = objective.encode(model, batch)
        assert h is not None and not h.requires_grad  # no_grad: the cheap default
        eye = torch.eye(8)
        q = k = eye[:4]
        ids = (torch.tensor(QUERY_IDS), torch.tensor(ANSWER_IDS), torch.tensor(HEAD_IDS))

        def loss(heads):
            return float(objective.contrastive(q, k, ids[0], ids[1], ids[2], heads)[0])

        base = loss(eye[4:])
        assert math.isclose(loss(torch.cat([eye[4:7], eye[3:4]])), base, rel_tol=1e-6)
        assert loss(torch.cat([eye[0:1], eye[5:8]])) > base + 0.1


class TestKaLMContrastiveFrozenBank(ObjectiveContract):
    """A query tower against a frozen key tower's bank of every entity: the
    positive and every negative come from the bank, no key views are encoded."""

    objective_name = "kalm_contrastive"
    entities = 12

    def make_objective(self):
        obj = KaLMContrastive(known_pairs=known_tensor(), num_answers=NUM_ANSWERS, kind="encoder",
                              key_tower="frozen", entity_bank=True)
        return obj

    def make_model(self):
        return TwoTowers(tiny_bert(0), tiny_bert(1), frozen_key=True)

    def make_batch(self):
        b = encoder_batch(with_heads=False)
        return {k: v for k, v in b.items() if not k.startswith("key_")}

    def _bank(self, model):
        gen = torch.Generator().manual_seed(11)
        ids, mask = right_padded(random_rows([3] * NUM_ANSWERS, gen))
        with torch.no_grad():
            h = model.key(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            bank = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
        valid = torch.ones(NUM_ANSWERS, dtype=torch.bool)
        valid[40] = False  # an entity without text is never a candidate
        return bank, valid

    def _parts(self):
        torch.manual_seed(0)
        objective, model, batch = self.make_objective(), self.make_model(), self.make_batch()
        objective.set_bank(*self._bank(model))
        return objective, model, batch

    def test_loss_matches_hand_computation(self):
        objective, model, batch = self._parts()
        bank, valid = objective.bank.tolist(), objective.bank_valid.tolist()
        with torch.no_grad():
            got = float(objective(model, batch).loss)
            q = mean_vectors(model.query, batch["query_input_ids"], batch["query_attention_mask"])
        ents = [e for e in range(NUM_ANSWERS) if valid[e]]
        cols = {e: j for j, e in enumerate(ents)}
        want = hand_two_directions(q, [bank[e] for e in ents], ents, [cols[a] for a in ANSWER_IDS],
                                   [bank[a] for a in ANSWER_IDS], 0.02, 20.0, KNOWN)
        assert math.isclose(got, want, rel_tol=1e-4), (got, want)

    def test_key_tower_gets_no_gradient(self):
        objective, model, batch = self._parts()
        objective(model, batch).loss.backward()
        assert all(p.grad is None for p in model.key.parameters())
        assert any(p.grad is not None for p in model.query.parameters())
        assert float(objective(model, batch).metrics["candidates"]) == NUM_ANSWERS


def test_bank_in_bf16_keeps_the_positive_exact():
    """``bank_precision: bf16``: every negative's cosine through the bf16 matmul
    (within bf16's rounding of the fp32 one), the positive's exactly fp32's."""
    gen = torch.Generator().manual_seed(3)
    bank = torch.nn.functional.normalize(torch.randn(50, 16, generator=gen), dim=-1)
    q = torch.nn.functional.normalize(torch.randn(4, 16, generator=gen), dim=-1)
    answers = torch.tensor([5, 0, 49, 5])
    exact = KaLMContrastive(num_answers=50, kind="encoder", key_tower="frozen", entity_bank=True)
    low = KaLMContrastive(num_answers=50, kind="encoder", key_tower="frozen", entity_bank=True, bank_precision="bf16")
    for obj in (exact, low):
        obj.set_bank(bank, torch.ones(50, dtype=torch.bool))
    assert low.bank_lowp.dtype == torch.bfloat16 and exact.bank_lowp is None
    want = (q.double() @ bank.double().T)
    got = low.bank_sims(q, answers)
    rows = torch.arange(4)
    assert torch.equal(got[rows, answers], (q * bank[answers]).sum(-1))  # the positive: fp32
    err = (got.double() - want).abs()
    assert float(err.max()) < 2 ** -7  # bf16's rounding of inputs and output
    assert float(err.max()) > 1e-6  # the negatives did go through bf16
    assert torch.allclose(exact.bank_sims(q, answers).double(), want, atol=1e-6)
    # the loss through it: close to fp32's, and the gradient reaches the queries
    qg = q.clone().requires_grad_(True)
    loss_low, _ = low.contrastive(qg, None, torch.tensor([1, 2, 3, 4]), answers, torch.tensor([7, 8, 9, 10]))
    loss_exact, _ = exact.contrastive(q, None, torch.tensor([1, 2, 3, 4]), answers, torch.tensor([7, 8, 9, 10]))
    assert math.isclose(float(loss_low), float(loss_exact), rel_tol=2e-3)
    loss_low.backward()
    assert qg.grad is not None and bool(torch.isfinite(qg.grad).all()) and float(qg.grad.abs().sum()) > 0


def test_known_answers_spans():
    keys = torch.tensor(sorted([10 * 100 + 5, 10 * 100 + 7, 12 * 100 + 1])).long()
    rows, cols = known_answers(torch.tensor([12, 11, 10]), keys, 100)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (2, 5), (2, 7)]


def test_settings_refuse_self_negatives_with_gradient_from_a_bank():
    with pytest.raises(ValueError, match="self_negatives: grad needs head views"):
        KaLMContrastiveSettings(self_negatives="grad", entity_bank=True)
    with pytest.raises(ValueError, match="frozen key tower"):
        KaLMContrastiveSettings(self_negatives="grad", key_tower="frozen")
    assert KaLMContrastiveSettings(entity_bank=True, key_tower="frozen").views() == {"query"}
    assert KaLMContrastiveSettings().views() == {"query", "key", "head"}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bank_only_sparse_masks_match_the_dense_path(precision):
    """A frozen bank's hr -> t loss is computed with its exclusions written
    into the logits (a few pairs a query), not with dense [B, N] masks: the
    same loss, gradients and metrics as the dense path, with an entity without
    text, known answers, rows of one query and a positive that is also a
    known answer."""
    gen = torch.Generator().manual_seed(5)
    n = 60
    bank = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen), dim=-1)
    valid = torch.ones(n, dtype=torch.bool)
    valid[[7, 33]] = False
    query_id = torch.tensor([4, 9, 4, 2, 11, 9])
    answer_id = torch.tensor([5, 0, 12, 59, 5, 40])
    # known: query 4 answers 5, 12 and 20; query 2 answers 59 (its positive) and 3
    known = torch.tensor(sorted([4 * n + 5, 4 * n + 12, 4 * n + 20, 2 * n + 59, 2 * n + 3])).long()
    obj = KaLMContrastive(num_answers=n, kind="encoder", key_tower="frozen", entity_bank=True, known_pairs=known,
                          bank_precision=precision, both_directions=False)
    q0 = torch.nn.functional.normalize(torch.randn(6, 16, generator=gen), dim=-1)
    # every excluded candidate the best scoring one for its query, so that a
    # mask left out moves the loss by far more than rounding
    bank[20], bank[3], bank[7], bank[33], bank[40] = q0[0], q0[3], q0[1], q0[4], q0[1]
    obj.set_bank(bank, valid)
    inv_t = obj.inv_temperature()
    results = []
    for path in ("sparse", "dense"):
        q = q0.clone().requires_grad_(True)
        obj.log_inv_temperature.grad = None
        if path == "sparse":
            loss, acc, pos, cand = obj._bank_only(q, query_id, answer_id, query_id, answer_id, obj.inv_temperature())
        else:
            loss, acc, pos, cand = obj._with_fresh(q, None, None, query_id, answer_id, None, query_id, answer_id,
                                                   lambda x: x, n, torch.arange(6), obj.inv_temperature())
        loss.backward()
        results.append((float(loss), q.grad.clone(), float(obj.log_inv_temperature.grad), float(acc), float(pos), cand))
    (ls, gs, ts, as_, ps, cs), (ld, gd, td, ad, pd, cd) = results
    assert math.isclose(ls, ld, rel_tol=1e-6) and torch.allclose(gs, gd, atol=1e-6) and math.isclose(ts, td, rel_tol=1e-5)
    assert (as_, cs) == (ad, cd) and math.isclose(ps, pd, rel_tol=1e-6)
    assert float(inv_t) == 20.0 and cs == n
    # and through the objective's entry point: the sparse path is the one taken
    assert math.isclose(float(obj.contrastive(q0, None, query_id, answer_id)[0]), ls, rel_tol=1e-6)
