"""KaLM (Dai et al. 2024, arXiv 2412.04948): knowledge-aligned language modeling.

Explicit alignment (:class:`KaLMContrastive`): for a triple (h, r, t) the
*query view* is the text of h plus r and the *key view* is the text of t. The
causal LM encodes each view; its representation is the last-layer hidden state
at the final (EOS) token, L2-normalised:

    q_i = norm(H_L(query_i)[EOS]),  k_i = norm(H_L(key_i)[EOS])     [B, D]

With cosine similarities s_ij = q_i . k_j, an additive margin m on the
positive and a learnable temperature tau, the hr -> t InfoNCE loss is

    L_q = -(1/B) sum_i log  exp((s_ii - m)/tau) /
          ( exp((s_ii - m)/tau) + sum_{j != i, (h_i, r_i, t_j) not true} exp(s_ij/tau) )

Other true pairs in the batch (another row with the same query and tail, or a
triple of the training graph) are removed from the denominator: they are not
negatives. L_k is the same with the roles swapped (t -> hr), and the
explicit loss is (L_q + L_k) / 2. With ``gather_negatives`` the candidates are
every worker's views (see :mod:`kgscale.objectives.gather`); the reference
uses only the local batch.

Implicit alignment (:class:`KaLMCompletion`): triple completion language
modeling, the causal LM loss on a verbalised (h, r) prompt whose completion
is the text of t, counted on completion tokens only:

    L_lm = -(1/|C|) sum_{t in C} log p(x_t | x_<t)

:class:`KaLM` trains both: L = L_explicit + lambda * L_lm (lambda = 0.01 in
the reference command).
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from kgscale.config import StrictModel
from kgscale.models.pooling import last_token
from kgscale.models.training import causal_parts
from kgscale.objectives.base import Objective, ObjectiveOutput, masked_token_ce, shifted_label_positions
from kgscale.objectives.gather import all_gather_with_local_grad, world

KALM_LORA_TARGETS = ["gate_proj", "up_proj", "down_proj"]
# Upper bound on 1/tau, as CLIP does for its logit scale: a temperature that
# collapses to 0 would make the loss a hard max and its gradients explode.
MAX_INV_TEMPERATURE = 100.0
_MASKED = -1e9  # a logit that is not a candidate (exp underflows to exactly 0)


# ---------------------------------------------------------------- pure losses

def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None,
             margin: float, inv_temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE with an additive margin on the positive.

    ``anchors`` [B, D] and ``candidates`` [N, D] L2-normalised; ``targets`` [B]
    the column of each anchor's positive; ``exclude`` [B, N] bool, True for a
    candidate that is neither the positive nor a negative (another true pair);
    ``inv_temperature`` scalar 1/tau. Returns (mean loss, logits [B, N]) with

        logits_ij = (a_i . c_j - m [j = target_i]) / tau,  excluded -> -inf
        loss = mean_i CE(logits_i, target_i)
    """
    sims = anchors.float() @ candidates.float().T
    rows = torch.arange(sims.shape[0], device=sims.device)
    sims = sims - margin * F.one_hot(targets, sims.shape[1]).to(sims.dtype)
    logits = sims * inv_temperature
    if exclude is not None:
        exclude = exclude.clone()
        exclude[rows, targets] = False  # the positive is never excluded
        logits = logits.masked_fill(exclude, _MASKED)
    return F.cross_entropy(logits, targets), logits


def true_pair_mask(query_ids: torch.Tensor, answer_ids: torch.Tensor, batch_query_ids: torch.Tensor,
                   batch_answer_ids: torch.Tensor, known_pairs: torch.Tensor | None, num_answers: int) -> torch.Tensor:
    """[len(query_ids), len(answer_ids)] bool: is (query_i, answer_j) a true pair?

    True when some row k of the batch has (query_k, answer_k) = (query_i,
    answer_j), or when ``known_pairs`` (sorted int64 keys query * num_answers +
    answer, e.g. every training triple) holds it."""
    keys = query_ids[:, None].long() * num_answers + answer_ids[None, :].long()
    batch_keys = batch_query_ids.long() * num_answers + batch_answer_ids.long()
    mask = torch.isin(keys, batch_keys)
    if known_pairs is not None and known_pairs.numel():
        idx = torch.searchsorted(known_pairs, keys).clamp_max(known_pairs.numel() - 1)
        mask |= known_pairs[idx] == keys
    return mask


def completion_lm_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module) -> tuple[torch.Tensor, int]:
    """Causal LM loss on completion tokens only.

    ``hidden`` [B, T, D] last hidden states, ``labels`` [B, T] (token ids on the
    completion, -100 on the prompt and padding), ``head`` the vocabulary
    projection. Only the N positions that predict a completion token are
    projected ([N, V], not [B, T, V]). Returns (mean CE, N)."""
    mask, targets = shifted_label_positions(labels)
    logits = head(hidden[:, :-1][mask])
    return masked_token_ce(logits, targets), int(targets.numel())


def encode_views(trunk: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] token ids (each row ends with EOS) -> [B, D] L2-normalised EOS states."""
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return F.normalize(last_token(hidden, attention_mask).float(), dim=-1)


# ---------------------------------------------------------------- settings

class KaLMContrastiveSettings(StrictModel):
    name: Literal["kalm_contrastive"] = "kalm_contrastive"
    # subtracted from the positive's cosine before the temperature
    margin: float = Field(0.02, ge=0.0)
    # initial temperature tau
    temperature: float = Field(0.05, gt=0.0)
    learn_temperature: bool = True
    # negatives from every worker's batch (with gradients for the local shard)
    gather_negatives: bool = False
    # drop training-graph triples, not only in-batch duplicates, from the negatives
    mask_known_triples: bool = True


class KaLMCompletionSettings(StrictModel):
    name: Literal["kalm_lm"] = "kalm_lm"


class KaLMSettings(KaLMContrastiveSettings):
    name: Literal["kalm"] = "kalm"  # type: ignore[assignment]
    # lambda: weight of the triple-completion LM loss
    lm_weight: float = Field(0.01, ge=0.0)


# ---------------------------------------------------------------- modules

class KaLMContrastive(Objective):
    """Explicit alignment. Batch: ``query_input_ids`` / ``query_attention_mask``
    [B, Tq], ``key_input_ids`` / ``key_attention_mask`` [B, Tk], ``query_id``
    and ``answer_id`` [B] int64 (query = (entity, relation, direction), answer =
    the entity the key view shows)."""

    name: ClassVar[str] = "kalm_contrastive"
    model_kind = "causal"
    default_lora_targets = KALM_LORA_TARGETS
    batch_keys = ("query_input_ids", "query_attention_mask", "key_input_ids", "key_attention_mask", "query_id", "answer_id")

    def __init__(self, margin: float = 0.02, temperature: float = 0.05, learn_temperature: bool = True,
                 gather_negatives: bool = False, known_pairs: torch.Tensor | None = None,
                 num_answers: int | None = None) -> None:
        super().__init__()
        if known_pairs is not None and num_answers is None:
            raise ValueError("known_pairs are keys query * num_answers + answer: num_answers is required with them")
        self.margin = margin
        self.gather_negatives = gather_negatives
        # shape [1], not a 0-d scalar: DeepSpeed broadcasts parameters as byte views
        init = torch.tensor([math.log(1.0 / temperature)], dtype=torch.float32)
        if learn_temperature:
            self.log_inv_temperature = nn.Parameter(init)
        else:
            self.register_buffer("log_inv_temperature", init)
        self.register_buffer("known_pairs", None if known_pairs is None else known_pairs.long().sort().values,
                             persistent=False)
        self.num_answers = num_answers

    def inv_temperature(self) -> torch.Tensor:
        """1/tau as a 0-d tensor."""
        return self.log_inv_temperature.exp().clamp(max=MAX_INV_TEMPERATURE).squeeze()

    def summarize_state(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        out = super().summarize_state(state)
        if "log_inv_temperature" in state:
            out["temperature"] = 1.0 / min(math.exp(float(state["log_inv_temperature"])), MAX_INV_TEMPERATURE)
        return out

    def contrastive(self, q: torch.Tensor, k: torch.Tensor, query_id: torch.Tensor,
                    answer_id: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Both directions on [B, D] views; gathered across workers if configured."""
        b = q.shape[0]
        rank, size = world()
        if self.gather_negatives and size > 1:
            q_all, k_all = all_gather_with_local_grad(q), all_gather_with_local_grad(k)
            qid_all, aid_all = all_gather_with_local_grad(query_id), all_gather_with_local_grad(answer_id)
            offset = rank * b
        else:
            q_all, k_all, qid_all, aid_all, offset = q, k, query_id, answer_id, 0
        targets = torch.arange(b, device=q.device) + offset
        # any N above every answer id makes query * N + answer unique
        num_answers = self.num_answers or int(aid_all.max().item()) + 1
        # hr -> t: candidates are every tail in view; exclude other true tails of query i
        ex_q = true_pair_mask(query_id, aid_all, qid_all, aid_all, self.known_pairs, num_answers)
        loss_q, logits_q = info_nce(q, k_all, targets, ex_q, self.margin, self.inv_temperature())
        # t -> hr: candidates are every query; exclude queries that t_j also answers
        ex_k = true_pair_mask(qid_all, answer_id, qid_all, aid_all, self.known_pairs, num_answers).T
        loss_k, _ = info_nce(k, q_all, targets, ex_k, self.margin, self.inv_temperature())
        loss = (loss_q + loss_k) / 2
        with torch.no_grad():
            acc = (logits_q.argmax(dim=1) == targets).float().mean()
            pos = (q * k).sum(-1).mean()
        return loss, {"contrastive": loss.detach(), "accuracy": acc, "pos_cosine": pos,
                      "temperature": (1.0 / self.inv_temperature()).detach(), "candidates": torch.tensor(float(k_all.shape[0]))}

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        trunk, _ = causal_parts(model)
        q = encode_views(trunk, batch["query_input_ids"], batch["query_attention_mask"])
        k = encode_views(trunk, batch["key_input_ids"], batch["key_attention_mask"])
        loss, metrics = self.contrastive(q, k, batch["query_id"], batch["answer_id"])
        return ObjectiveOutput(loss, {"loss": loss.detach(), **metrics})


class KaLMCompletion(Objective):
    """Implicit alignment alone. Batch: ``lm_input_ids`` / ``lm_attention_mask``
    / ``lm_labels`` [B, T] (labels: -100 except on the completion)."""

    name: ClassVar[str] = "kalm_lm"
    model_kind = "causal"
    default_lora_targets = KALM_LORA_TARGETS
    batch_keys = ("lm_input_ids", "lm_attention_mask", "lm_labels")

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        trunk, head = causal_parts(model)
        hidden = trunk(input_ids=batch["lm_input_ids"], attention_mask=batch["lm_attention_mask"]).last_hidden_state
        loss, n = completion_lm_loss(hidden, batch["lm_labels"], head)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "lm": loss.detach(), "completion_tokens": torch.tensor(float(n))})


class KaLM(KaLMContrastive):
    """Explicit + implicit alignment: L = L_explicit + lm_weight * L_lm."""

    name: ClassVar[str] = "kalm"
    batch_keys = KaLMContrastive.batch_keys + KaLMCompletion.batch_keys

    def __init__(self, lm_weight: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lm_weight = lm_weight

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        trunk, head = causal_parts(model)
        q = encode_views(trunk, batch["query_input_ids"], batch["query_attention_mask"])
        k = encode_views(trunk, batch["key_input_ids"], batch["key_attention_mask"])
        contrastive, metrics = self.contrastive(q, k, batch["query_id"], batch["answer_id"])
        hidden = trunk(input_ids=batch["lm_input_ids"], attention_mask=batch["lm_attention_mask"]).last_hidden_state
        lm, _ = completion_lm_loss(hidden, batch["lm_labels"], head)
        loss = contrastive + self.lm_weight * lm
        return ObjectiveOutput(loss, {"loss": loss.detach(), **metrics, "lm": lm.detach()})
