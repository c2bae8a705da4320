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

import contextlib
import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from kgscale.config import StrictModel
from kgscale.models.pooling import pool
from kgscale.models.towers import query_and_key
from kgscale.models.training import causal_parts
from kgscale.objectives.base import Objective, ObjectiveOutput, full_precision, masked_token_ce, shifted_label_positions
from kgscale.objectives.gather import all_gather_with_local_grad, world
from kgscale.objectives.method import Method

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
    return info_nce_scores(anchors.float() @ candidates.float().T, targets, exclude, margin, inv_temperature)


def info_nce_scores(sims: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None, margin: float,
                    inv_temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`info_nce` on precomputed cosines ``sims`` [B, N]."""
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


def encode_views(trunk: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 pooling: str = "last") -> torch.Tensor:
    """[B, T] token ids -> [B, D] L2-normalised representations: the state at
    the final (EOS) token for a causal LM (``last``), the mean over tokens for
    an encoder (``mean``)."""
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return pool(hidden.float(), attention_mask, pooling)


def known_answers(query_ids: torch.Tensor, known_pairs: torch.Tensor, num_answers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, answer) of every known pair of each query: the keys of
    ``known_pairs`` (sorted ``query * num_answers + answer``) in
    [q * num_answers, (q + 1) * num_answers) are query q's answers."""
    base = query_ids.long() * num_answers
    lo = torch.searchsorted(known_pairs, base)
    hi = torch.searchsorted(known_pairs, base + num_answers)
    counts = hi - lo
    rows = torch.repeat_interleave(torch.arange(len(query_ids), device=query_ids.device), counts)
    starts = torch.repeat_interleave(lo - (torch.cumsum(counts, 0) - counts), counts)
    pos = starts + torch.arange(int(counts.sum()), device=query_ids.device)
    return rows, known_pairs[pos] - base[rows]


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
    # the encoder of the entity (key) view: the query's own (KaLM), a separate
    # trainable copy of the starting model (SimKGC), or the starting model frozen
    key_tower: Literal["shared", "separate", "frozen"] = "shared"
    # each query also scored against its own entity's key view (SimKGC's
    # self-negatives; masked when (h, r, h) is true): encoded without gradient
    # (cheap), with gradient, or not at all
    self_negatives: Literal["none", "no_grad", "grad"] = "no_grad"
    # every entity's key view as a negative, from a bank of cached key
    # embeddings (true answers masked); rows of the batch's fresh keys replace
    # their cached copies as training goes
    entity_bank: bool = False
    # re-embed the whole bank every N optimiser steps (0: never; a frozen key
    # tower's bank is exact and never needs it)
    bank_refresh_every: int = Field(0, ge=0)
    # the precision of the query-bank matmul (every query against every entity,
    # forward and back): bf16 runs it 3.6x faster on a CPU with bf16 matrix
    # units (32 x 40,943 x 384 here: 4.7 ms against 17 ms). Each negative's
    # cosine then carries bf16 rounding (about 0.002 at cosine 0.5); the
    # positive's is recomputed exactly in fp32
    bank_precision: Literal["fp32", "bf16"] = "fp32"
    # also the t -> hr direction (each key against the batch's queries), as
    # KaLM averages both; with a bank the hr -> t direction already ranks
    # against every entity and the in-batch t -> hr term mostly halves its weight
    both_directions: bool = True
    # whiten the frozen bank's key space (its mean removed, every principal
    # direction given the same spread) and put the queries through the same
    # map: an untrained causal LM's EOS states crowd into a narrow cone that a
    # frozen bank cannot leave (kgscale.models.whitening); the map is saved
    # with the model and applied wherever it embeds
    whiten_bank: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.whiten_bank and not (self.entity_bank and self.key_tower == "frozen"):
            raise ValueError("whiten_bank: whitens a frozen key tower's bank, fitted once; it needs entity_bank: true "
                             f"and key_tower: frozen (got entity_bank: {str(self.entity_bank).lower()}, "
                             f"key_tower: {self.key_tower})")
        if self.whiten_bank and self.bank_refresh_every:
            raise ValueError("whiten_bank: the whitening is fitted once from the frozen bank, which never needs a "
                             "refresh; set bank_refresh_every: 0")
        if self.self_negatives == "grad" and (self.entity_bank or self.key_tower == "frozen"):
            where = "come from the entity bank" if self.entity_bank else "come from the frozen key tower"
            raise ValueError(f"self_negatives: grad needs head views encoded with gradient in the batch, but the head "
                             f"views {where}, without gradient; use self_negatives: no_grad")
        if self.bank_refresh_every and not self.entity_bank:
            raise ValueError("bank_refresh_every: only applies with entity_bank: true")
        return self

    def views(self) -> set[str]:
        """The token-id views each sample needs: ``query`` always, ``key``
        unless every key comes from a frozen bank, ``head`` for self-negatives
        outside a bank."""
        out = {"query"}
        if not (self.entity_bank and self.key_tower == "frozen"):
            out.add("key")
        if self.self_negatives != "none" and not self.entity_bank:
            out.add("head")
        return out


class KaLMCompletionSettings(StrictModel):
    name: Literal["kalm_lm"] = "kalm_lm"

    def views(self) -> set[str]:
        return {"lm"}


class KaLMSettings(KaLMContrastiveSettings):
    name: Literal["kalm"] = "kalm"  # type: ignore[assignment]
    # lambda: weight of the triple-completion LM loss
    lm_weight: float = Field(0.01, ge=0.0)

    def views(self) -> set[str]:
        return super().views() | {"lm"}


# ---------------------------------------------------------------- modules

VIEW_KEYS = {"query": ("query_input_ids", "query_attention_mask"), "key": ("key_input_ids", "key_attention_mask"),
             "head": ("head_input_ids", "head_attention_mask"), "lm": ("lm_input_ids", "lm_attention_mask", "lm_labels")}


class KaLMContrastive(Objective):
    """Explicit alignment. Batch: ``query_input_ids`` / ``query_attention_mask``
    [B, Tq], ``key_input_ids`` / ``key_attention_mask`` [B, Tk] (unless every
    key comes from a frozen bank), ``head_input_ids`` / ``head_attention_mask``
    [B, Th] (self-negatives outside a bank), ``query_id``, ``answer_id`` and
    ``head_id`` [B] int64 (query = (entity, relation, direction), answer = the
    entity the key view shows, head = the query's own entity).

    Candidates for a query: the batch's keys (every worker's with
    ``gather_negatives``), its heads (self-negatives) and, with a bank, every
    entity [N, D]; a candidate that is a true answer of the query (another
    row's pair, a known triple, (h, r, h) itself) is masked, never the
    positive."""

    name: ClassVar[str] = "kalm_contrastive"
    model_kinds = ("causal", "encoder")
    default_lora_targets = KALM_LORA_TARGETS
    batch_keys = ("query_input_ids", "query_attention_mask", "key_input_ids", "key_attention_mask", "query_id", "answer_id")

    def __init__(self, margin: float = 0.02, temperature: float = 0.05, learn_temperature: bool = True,
                 gather_negatives: bool = False, known_pairs: torch.Tensor | None = None,
                 num_answers: int | None = None, key_tower: str = "shared", self_negatives: str = "none",
                 entity_bank: bool = False, bank_refresh_every: int = 0, bank_precision: str = "fp32",
                 both_directions: bool = True, whiten_bank: bool = False, kind: str = "causal") -> None:
        super().__init__()
        if known_pairs is not None and num_answers is None:
            raise ValueError("known_pairs are keys query * num_answers + answer: num_answers is required with them")
        if entity_bank and num_answers is None:
            raise ValueError("entity_bank needs num_answers (the number of entities)")
        self.margin = margin
        self.gather_negatives = gather_negatives
        self.key_tower, self.self_negatives, self.entity_bank = key_tower, self_negatives, entity_bank
        self.bank_refresh_every = bank_refresh_every
        self.bank_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[bank_precision]
        self.both_directions = both_directions
        self.kind = kind
        self.pooling = "last" if kind == "causal" else "mean"
        # shape [1], not a 0-d scalar: DeepSpeed broadcasts parameters as byte views
        init = torch.tensor([math.log(1.0 / temperature)], dtype=torch.float32)
        if learn_temperature:
            self.log_inv_temperature = nn.Parameter(init)
        else:
            self.register_buffer("log_inv_temperature", init)
        self.register_buffer("known_pairs", None if known_pairs is None else known_pairs.long().sort().values,
                             persistent=False)
        self.num_answers = num_answers
        # the entity bank: [N, D] key embeddings and which rows are candidates.
        # Plain attributes, not buffers: DDP would broadcast a buffer from rank
        # 0 before every forward pass, and the bank is the same on every rank.
        self.bank: torch.Tensor | None = None
        self.bank_valid: torch.Tensor | None = None
        self.bank_lowp: torch.Tensor | None = None  # the bank in bank_dtype, when that is not fp32
        self.whiten_bank = whiten_bank
        self.whitening = None  # fitted from the bank by set_bank (kgscale.models.whitening)
        settings = KaLMContrastiveSettings(key_tower=key_tower, self_negatives=self_negatives, entity_bank=entity_bank,
                                           bank_refresh_every=bank_refresh_every, whiten_bank=whiten_bank)
        self.batch_keys = self._keys(settings.views())

    @classmethod
    def from_settings(cls, settings, *, known_pairs: torch.Tensor | None = None, num_answers: int | None = None,
                      kind: str | None = None) -> "KaLMContrastive":
        """Takes the training graph's (query, answer) keys (so true pairs are
        not negatives; unless ``mask_known_triples`` is off), the number of
        entities, and the backbone's kind (its pooling)."""
        params = settings.model_dump(exclude={"name"})
        mask_known = params.pop("mask_known_triples")
        return cls(**params, known_pairs=known_pairs if mask_known else None, num_answers=num_answers,
                   kind=kind or "causal")

    def _keys(self, views: set[str]) -> tuple[str, ...]:
        ids = ("query_id", "answer_id") + (("head_id",) if self.self_negatives != "none" or self.entity_bank else ())
        return tuple(k for v in ("query", "key", "head", "lm") if v in views for k in VIEW_KEYS[v]) + ids

    def set_bank(self, embeddings: torch.Tensor, valid: torch.Tensor) -> None:
        """[N, D] unit rows (the key tower's embedding of every entity) and [N]
        bool (False: an entity without text, never a candidate). With
        ``whiten_bank`` the whitening is fitted here, once, on the valid rows,
        and the bank kept whitened."""
        if self.num_answers is not None and embeddings.shape[0] != self.num_answers:
            raise ValueError(f"a bank of {embeddings.shape[0]} rows for {self.num_answers} entities")
        if self.whiten_bank:
            from kgscale.models.whitening import Whitening

            if self.whitening is not None:
                raise RuntimeError("a whitened bank is fitted once; it cannot be set again")
            self.whitening = Whitening.fit(embeddings[valid.bool()].float())
            embeddings = self.whitening.apply(embeddings)
        self.bank = embeddings.float().contiguous()
        self.bank_valid = valid.bool()
        self.bank_lowp = None if self.bank_dtype == torch.float32 else self.bank.to(self.bank_dtype)

    def bank_sims(self, q: torch.Tensor, answer_id: torch.Tensor | None) -> torch.Tensor:
        """[B, N] cosines of the queries with every bank row, in fp32 or through
        the ``bank_precision`` matmul; ``answer_id`` (each query's positive
        in the bank) gets its exact fp32 cosine either way."""
        if self.bank_lowp is None:
            return q @ self.bank.T
        sims = (q.to(self.bank_dtype) @ self.bank_lowp.T).float()
        if answer_id is None:
            return sims
        rows = torch.arange(q.shape[0], device=q.device)
        return sims.index_put((rows, answer_id), (q * self.bank[answer_id]).sum(-1))

    def inv_temperature(self) -> torch.Tensor:
        """1/tau as a 0-d tensor."""
        return self.log_inv_temperature.exp().clamp(max=MAX_INV_TEMPERATURE).squeeze()

    def summarize_state(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        out = {k: float(v) for k, v in state.items() if v.numel() == 1}
        if "log_inv_temperature" in state:
            out["temperature"] = 1.0 / min(math.exp(float(state["log_inv_temperature"])), MAX_INV_TEMPERATURE)
        return out

    def _bank_exclusions(self, query_id: torch.Tensor, target_col: torch.Tensor | None, qid_all: torch.Tensor,
                         aid_all: torch.Tensor, fresh_entities: torch.Tensor | None) -> torch.Tensor:
        """[B, N] bool over the bank's columns: not a candidate for query i."""
        b, n = len(query_id), self.bank.shape[0]
        ex = (~self.bank_valid)[None, :].expand(b, n).clone()
        if fresh_entities is not None and len(fresh_entities):
            ex[:, fresh_entities] = True  # the fresh copy in the batch stands for it
        rows, cols = torch.nonzero(query_id[:, None] == qid_all[None, :], as_tuple=True)
        ex[rows, aid_all[cols]] = True  # another row's answer to the same query
        if self.known_pairs is not None and self.known_pairs.numel():
            r, c = known_answers(query_id, self.known_pairs, self.num_answers)
            ex[r, c] = True
        if target_col is not None:
            ex[torch.arange(b, device=ex.device), target_col] = False
        return ex

    def contrastive(self, q: torch.Tensor, k: torch.Tensor | None, query_id: torch.Tensor, answer_id: torch.Tensor,
                    head_id: torch.Tensor | None = None, h: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Both directions on [B, D] views (``k`` None: every key from the bank,
        ``h`` the head views for self-negatives); gathered across workers if
        configured; in fp32 whatever the autocast around it."""
        with full_precision(q.device):
            return self._contrastive(q.float(), None if k is None else k.float(), query_id, answer_id, head_id,
                                     None if h is None else h.float())

    def _contrastive(self, q, k, query_id, answer_id, head_id, h):
        b = q.shape[0]
        rank, size = world()
        gather = self.gather_negatives and size > 1
        g = all_gather_with_local_grad if gather else (lambda x: x)
        offset = rank * b if gather else 0
        q_all, qid_all, aid_all = g(q), g(query_id), g(answer_id)
        rows = torch.arange(b, device=q.device)
        # any N above every entity id makes query * N + answer unique
        num_answers = self.num_answers or int(torch.cat([aid_all, head_id if head_id is not None else aid_all]).max()) + 1
        inv_t = self.inv_temperature()
        use_bank = self.entity_bank and self.bank is not None
        k_all = g(k) if k is not None else None

        # hr -> t: candidates are the fresh keys, then the heads, then the bank
        if use_bank and k is None and h is None:
            loss_q, acc, pos, candidates = self._bank_only(q, query_id, answer_id, qid_all, aid_all, inv_t)
        else:
            loss_q, acc, pos, candidates = self._with_fresh(q, k_all, h, query_id, answer_id, head_id, qid_all, aid_all,
                                                            g, num_answers, rows + offset, inv_t)

        # t -> hr: candidates are every query in view; exclude queries that t_i also answers
        if self.both_directions:
            anchors = k if k is not None else self.bank[answer_id]
            ex_k = true_pair_mask(qid_all, answer_id, qid_all, aid_all, self.known_pairs, num_answers).T
            loss_k, _ = info_nce(anchors, q_all, rows + offset, ex_k, self.margin, inv_t)
            loss = (loss_q + loss_k) / 2
        else:
            loss = loss_q

        if use_bank and k is not None and self.key_tower != "frozen":
            with torch.no_grad():
                self.bank[aid_all] = k_all.detach().float()  # fresher than the cached copies
                if self.bank_lowp is not None:
                    self.bank_lowp[aid_all] = k_all.detach().to(self.bank_dtype)
        return loss, {"contrastive": loss.detach(), "accuracy": acc, "pos_cosine": pos,
                      "temperature": (1.0 / inv_t).detach(), "candidates": torch.tensor(float(candidates))}

    def _with_fresh(self, q, k_all, h, query_id, answer_id, head_id, qid_all, aid_all, g, num_answers, local_targets,
                    inv_t):
        """hr -> t against the batch's fresh keys and heads (and the bank after
        them, when there is one): dense [B, candidates] masks.
        Returns (loss, top-1 accuracy, mean positive cosine, candidates)."""
        blocks, entities = [], []
        if k_all is not None:
            blocks.append(k_all), entities.append(aid_all)
        if h is not None:
            blocks.append(g(h)), entities.append(g(head_id))
        fresh = torch.cat(entities) if entities else None
        sims, ex = [], []
        if blocks:
            cand = torch.cat(blocks)
            sims.append(q.float() @ cand.float().T)
            ex.append(true_pair_mask(query_id, fresh, qid_all, aid_all, self.known_pairs, num_answers))
        if self.entity_bank and self.bank is not None:
            target_col = None if k_all is not None else answer_id
            sims.append(self.bank_sims(q, target_col))
            ex.append(self._bank_exclusions(query_id, target_col, qid_all, aid_all, aid_all if k_all is not None else None))
            targets = local_targets if k_all is not None else answer_id + (fresh.numel() if fresh is not None else 0)
        elif k_all is None:
            raise RuntimeError("every key comes from the entity bank, but the bank has not been set")
        else:
            targets = local_targets
        rows = torch.arange(q.shape[0], device=q.device)
        sims, ex = torch.cat(sims, dim=1), torch.cat(ex, dim=1)
        ex[rows, targets] = False  # the positive is never excluded
        loss, _ = info_nce_scores(sims, targets, ex, self.margin, inv_t)
        with torch.no_grad():
            # top-1 among the candidates as ranking would score them: plain cosine, no margin
            top = sims.masked_fill(ex, float("-inf")).argmax(dim=1)
            acc = (top == targets).float().mean()
            pos = sims[rows, targets].mean()
        return loss, acc, pos, sims.shape[1]

    def _bank_only(self, q, query_id, answer_id, qid_all, aid_all, inv_t):
        """hr -> t when every candidate is a bank row (a frozen key tower): the
        same loss as :meth:`_with_fresh` on the bank, without its dense
        [B, N] masks. A query's exclusions are a handful of (row, entity)
        pairs (entities without text, other rows' answers, known answers),
        written into the logits in place; the positive's logit, from its exact
        fp32 cosine, is written last, so it is never masked.
        Returns (loss, top-1 accuracy, mean positive cosine, candidates)."""
        b, n = q.shape[0], self.bank.shape[0]
        rows = torch.arange(b, device=q.device)
        pos = (q * self.bank[answer_id]).sum(-1)  # exact fp32, whatever bank_precision
        sims = q @ self.bank.T if self.bank_lowp is None else (q.to(self.bank_dtype) @ self.bank_lowp.T).float()
        logits = sims * inv_t  # written in place below: its backward needs sims and 1/tau, not logits
        masked_rows, masked_cols = [], []
        invalid = torch.nonzero(~self.bank_valid).squeeze(1)
        if invalid.numel():
            masked_rows.append(rows.repeat_interleave(invalid.numel())), masked_cols.append(invalid.repeat(b))
        r, c = torch.nonzero(query_id[:, None] == qid_all[None, :], as_tuple=True)
        masked_rows.append(r), masked_cols.append(aid_all[c])  # another row's answer to the same query
        if self.known_pairs is not None and self.known_pairs.numel():
            r, c = known_answers(query_id, self.known_pairs, self.num_answers)
            masked_rows.append(r), masked_cols.append(c)
        mr, mc = torch.cat(masked_rows), torch.cat(masked_cols)
        logits.index_put_((mr, mc), torch.full_like(mr, _MASKED, dtype=logits.dtype))
        logits.index_put_((rows, answer_id), (pos - self.margin) * inv_t)
        loss = F.cross_entropy(logits, answer_id)
        with torch.no_grad():
            # top-1 as ranking would score them (plain cosine, no margin): the
            # positive against the best other candidate
            if n > 1:
                vals, idx = logits.topk(2, dim=1)
                best_other = torch.where(idx[:, 0] == answer_id, vals[:, 1], vals[:, 0])
                acc = (pos * inv_t > best_other).float().mean()
            else:
                acc = torch.ones((), device=q.device)
        return loss, acc, pos.detach().mean(), n

    def encode(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """(q, k or None, h or None) for a batch."""
        q_trunk, k_trunk, frozen = query_and_key(model, self.kind)
        q = encode_views(q_trunk, batch["query_input_ids"], batch["query_attention_mask"], self.pooling)
        if self.whitening is not None:
            q = self.whitening.apply(q)
        k = h = None
        if "key_input_ids" in batch:
            with torch.no_grad() if frozen else contextlib.nullcontext():
                k = encode_views(k_trunk, batch["key_input_ids"], batch["key_attention_mask"], self.pooling)
        if "head_input_ids" in batch and self.self_negatives != "none":
            with torch.no_grad() if frozen or self.self_negatives == "no_grad" else contextlib.nullcontext():
                h = encode_views(k_trunk, batch["head_input_ids"], batch["head_attention_mask"], self.pooling)
        return q, k, h

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        q, k, h = self.encode(model, batch)
        loss, metrics = self.contrastive(q, k, batch["query_id"], batch["answer_id"], batch.get("head_id"), h)
        return ObjectiveOutput(loss, {"loss": loss.detach(), **metrics})


class KaLMCompletion(Objective):
    """Implicit alignment alone. Batch: ``lm_input_ids`` / ``lm_attention_mask``
    / ``lm_labels`` [B, T] (labels: -100 except on the completion)."""

    name: ClassVar[str] = "kalm_lm"
    model_kinds = ("causal",)
    default_lora_targets = KALM_LORA_TARGETS
    batch_keys = ("lm_input_ids", "lm_attention_mask", "lm_labels")

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        trunk, head = causal_parts(model)
        hidden = trunk(input_ids=batch["lm_input_ids"], attention_mask=batch["lm_attention_mask"]).last_hidden_state
        loss, n = completion_lm_loss(hidden, batch["lm_labels"], head)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "lm": loss.detach(), "completion_tokens": torch.tensor(float(n))})


class KaLM(KaLMContrastive):
    """Explicit + implicit alignment: L = L_explicit + lm_weight * L_lm
    (a causal LM only: the LM term needs a vocabulary head)."""

    name: ClassVar[str] = "kalm"
    model_kinds = ("causal",)
    batch_keys = KaLMContrastive.batch_keys + KaLMCompletion.batch_keys

    def __init__(self, lm_weight: float = 0.01, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lm_weight = lm_weight
        self.batch_keys = self.batch_keys + KaLMCompletion.batch_keys

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> ObjectiveOutput:
        q, k, h = self.encode(model, batch)
        contrastive, metrics = self.contrastive(q, k, batch["query_id"], batch["answer_id"], batch.get("head_id"), h)
        trunk, head = causal_parts(model.query if hasattr(model, "query") else model)
        hidden = trunk(input_ids=batch["lm_input_ids"], attention_mask=batch["lm_attention_mask"]).last_hidden_state
        lm, _ = completion_lm_loss(hidden, batch["lm_labels"], head)
        loss = contrastive + self.lm_weight * lm
        return ObjectiveOutput(loss, {"loss": loss.detach(), **metrics, "lm": lm.detach()})


# ---------------------------------------------------------------- wiring

class KaLMData(StrictModel):
    """KaLM's own ``data`` settings (every KaLM objective reads them)."""

    # entity texts are cut at this many tokens before composing a view
    # (no key may contain "token": kgscale.config reads such keys as secrets)
    max_entity_length: int = Field(50, ge=1)
    # also train (t, r^-1) -> h
    inverse: bool = True
    # implicit alignment: the prompt; the completion is the tail's text
    lm_prompt: str = "Complete the triple: {query} ->"


def _samples(cfg, snapshot, rejects):
    from kgscale.samples.kalm import kalm_samples

    return kalm_samples(snapshot, cfg.data.split, cfg.data.inverse, rejects)


def _tokenizer(cfg, base: dict, decoder_start_token_id, kind: str):
    from kgscale.samples.tokenize import KaLMTokenize

    d = cfg.data
    return KaLMTokenize, {**base, "max_entity_length": d.max_entity_length, "lm_prompt": d.lm_prompt,
                          "views": tuple(sorted(cfg.objective.views())), "append_eos": kind == "causal"}


def _contrastive_worker_info(cfg, pre, timer) -> dict:
    """The entity count, the training graph's (query, answer) keys (true pairs
    are no negatives) and, with ``objective.entity_bank``, the bank."""
    import ray

    from kgscale.samples.kalm import known_pair_keys
    from kgscale.train.bank import entity_bank

    info: dict = {"num_answers": pre.snapshot.num_entities}
    if cfg.objective.mask_known_triples:
        info["known_pairs"] = ray.put(known_pair_keys(pre.snapshot, ("train",), cfg.data.inverse))
    if cfg.objective.entity_bank:
        with timer("bank"):
            info.update(entity_bank(cfg, pre))
    return info


#: ``kalm`` and ``kalm_contrastive``: the contrastive objectives, with the
#: workers' entity count, known triples and entity bank
CONTRASTIVE_METHOD = Method("snapshot", _samples, _tokenizer, KaLMData, worker_info=_contrastive_worker_info)
#: ``kalm_lm``: triple completion alone
COMPLETION_METHOD = Method("snapshot", _samples, _tokenizer, KaLMData)
