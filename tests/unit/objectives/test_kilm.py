from __future__ import annotations

import math

import torch

from kgscale.objectives.kilm import KILM, seq2seq_loss
from tests.unit.objectives.contract import ObjectiveContract, log_softmax_list
from tests.unit.objectives.tiny import EOS, random_rows, right_padded, tiny_bart


def kilm_batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    sources = random_rows([7, 5, 8], gen, eos=True)
    targets = random_rows([6, 4, 7], gen, eos=True)
    ids, mask = right_padded(sources)
    labels, _ = right_padded(targets, fill=-100)
    dec, dec_mask = right_padded([[EOS] + t[:-1] for t in targets])
    desc, _ = right_padded([[0, 0, 1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0]], fill=0)
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask,
            "labels": labels, "description_mask": desc}


class TestKILM(ObjectiveContract):
    objective_name = "kilm"

    def make_objective(self):
        return KILM()

    def make_model(self):
        return tiny_bart()

    def make_batch(self):
        return kilm_batch()

    def hand_loss(self, objective, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"],
                       decoder_attention_mask=batch["decoder_attention_mask"]).logits
        losses = [-log_softmax_list(logits[i, t].tolist())[int(y)]
                  for i, row in enumerate(batch["labels"]) for t, y in enumerate(row) if int(y) != -100]
        return sum(losses) / len(losses)

    def test_description_metric_covers_description_tokens_only(self):
        objective, model, batch = self._parts()
        with torch.no_grad():
            out = objective(model, batch)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=batch["decoder_input_ids"],
                           decoder_attention_mask=batch["decoder_attention_mask"]).logits
        sel = batch["description_mask"].bool()
        losses = [-log_softmax_list(row.tolist())[int(y)] for row, y in zip(logits[sel], batch["labels"][sel])]
        assert math.isclose(float(out.metrics["description"]), sum(losses) / len(losses), rel_tol=1e-4)


def test_seq2seq_loss_by_hand():
    # two positions, one padded; vocabulary of 3
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, -100]])
    want = -(2.0 - math.log(math.exp(2.0) + 2.0))
    assert math.isclose(float(seq2seq_loss(logits, labels)), want, rel_tol=1e-6)
