"""Tokenisation of training samples: one callable class an objective, run by
Ray Data's ``map_batches`` (each worker process builds it, and so loads the
tokenizer, once: :func:`kgscale.samples.pipeline.tokenized_dataset`). Each turns a batch of text rows into ragged int32 id lists; padding
happens per micro-batch on the worker (:mod:`kgscale.samples.collate`), so no
sequence is padded to the longest of the whole dataset.

Rows are never dropped here: a sequence longer than ``max_length`` is cut
and its row marked ``truncated``, which the manifest counts.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from kgscale.models.backbone import BackboneConfig
from kgscale.models.tokenize import RememberedEncodings, query_view_texts, token_ids, truncate_texts, view_ids
from kgscale.samples.noise import text_infilling

IDS = pa.list_(pa.int32())


def _ids_array(rows) -> pa.Array:
    return pa.array([np.asarray(r, dtype=np.int32) for r in rows], type=IDS)


class _Tokenize:
    """Holds the tokenizer (with the objective's special tokens added)."""

    def __init__(self, backbone: dict, special_tokens: tuple[str, ...], max_length: int) -> None:
        from kgscale.models.training import prepare_tokenizer

        # entity texts recur in many rows: each distinct text is encoded once a process
        self.tok = RememberedEncodings(prepare_tokenizer(BackboneConfig.model_validate(backbone), tuple(special_tokens)))
        self.max_length = max_length
        self.eos = self.tok.eos_token_id


class KaLMTokenize(_Tokenize):
    """Rows of :func:`kgscale.samples.kalm.kalm_samples` -> the ``views`` asked
    for: ``query_input_ids`` (the (h, r) view), ``key_input_ids`` (the tail
    view), ``head_input_ids`` (the query's own entity as a key view, for
    self-negatives), ``lm_input_ids`` / ``lm_labels`` (completion prompt +
    tail text + EOS; labels only on the completion); and ``query_id``,
    ``answer_id``, ``head_id``, ``truncated``.

    Views are encoded as evaluation and serving encode them
    (:func:`kgscale.models.tokenize.view_ids`: the tokenizer's own special
    tokens, EOS last for a causal LM) from the same strings
    (:func:`kgscale.models.tokenize.query_view_texts`: entity texts cut at
    ``max_entity_length`` tokens, and further so the relation always fits)."""

    def __init__(self, backbone: dict, special_tokens: tuple[str, ...], max_length: int, max_entity_length: int,
                 lm_prompt: str, views: tuple[str, ...] = ("query", "key", "lm"), append_eos: bool = True) -> None:
        super().__init__(backbone, special_tokens, max_length)
        self.max_entity_length = max_entity_length
        self.lm_prompt = lm_prompt
        self.views = set(views)
        self.append_eos = append_eos

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["entity_text"])
        answers = truncate_texts(self.tok, list(batch["answer_text"]), self.max_entity_length)
        queries = query_view_texts(self.tok, list(batch["entity_text"]), list(batch["relation_text"]),
                                   [bool(i) for i in batch["inverse"]], self.max_entity_length, self.max_length,
                                   self.append_eos)
        out: dict[str, pa.Array] = {"query_id": pa.array(batch["query_id"].astype(np.int64)),
                                    "answer_id": pa.array(batch["answer_id"].astype(np.int64)),
                                    "head_id": pa.array(batch["head_id"].astype(np.int64))}
        truncated = np.zeros(n, bool)

        def encode(name: str, texts: list[str]) -> None:
            nonlocal truncated
            ids = view_ids(self.tok, texts, self.max_length, self.append_eos)
            truncated |= np.array([len(x) >= self.max_length for x in ids], dtype=bool)
            out[f"{name}_input_ids"] = _ids_array(ids)

        if "query" in self.views:
            encode("query", queries)
        if "key" in self.views:
            encode("key", answers)
        if "head" in self.views:
            encode("head", truncate_texts(self.tok, list(batch["entity_text"]), self.max_entity_length))
        if "lm" in self.views:
            prompts = token_ids(self.tok, [self.lm_prompt.format(query=q) for q in queries])
            completions = [c + [self.eos] for c in token_ids(self.tok, [" " + a for a in answers])]
            ids, labels = [], []
            for p, c in zip(prompts, completions):
                seq = (p + c)[: self.max_length]
                lab = ([-100] * len(p) + c)[: self.max_length]
                ids.append(seq), labels.append(lab)
            truncated |= np.array([len(p) + len(c) > self.max_length for p, c in zip(prompts, completions)], dtype=bool)
            out["lm_input_ids"], out["lm_labels"] = _ids_array(ids), _ids_array(labels)
        out["truncated"] = pa.array(truncated)
        return pa.table(out)


class KALETokenize(_Tokenize):
    """Rows of :func:`kgscale.samples.kale.kale_samples` -> ``with_input_ids`` /
    ``with_labels`` (question, rationale, answer) and ``without_input_ids`` /
    ``without_labels`` (question, answer); the answer's ids are identical in
    both. When too long, the rationale is cut first, then the question's start."""

    def __init__(self, backbone: dict, special_tokens: tuple[str, ...], max_length: int,
                 question_prefix: str = "Question: ", rationale_prefix: str = "Rationale: ",
                 answer_prefix: str = "Answer:") -> None:
        super().__init__(backbone, special_tokens, max_length)
        self.prefixes = (question_prefix, rationale_prefix, answer_prefix)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        qp, rp, ap = self.prefixes
        questions = token_ids(self.tok, [qp + q for q in batch["question"]])
        # no rationale: no rationale tokens, so both views read the same sequence
        rationales = token_ids(self.tok, [rp + r + "\n" if r else "" for r in batch["rationale"]])
        answers = [a + [self.eos] for a in token_ids(self.tok, [" " + a for a in batch["answer"]])]
        prompt_end = token_ids(self.tok, [ap])[0]
        cols: dict[str, list] = {"with_input_ids": [], "with_labels": [], "without_input_ids": [], "without_labels": []}
        truncated = []
        half = self.max_length // 2
        for q, r, full_answer in zip(questions, rationales, answers):
            a = full_answer[:half]  # an answer never takes more than half the budget
            room = self.max_length - len(a) - len(prompt_end)
            q_cut = q[-room:] if len(q) > room else q
            r_cut = r[: max(0, room - len(q_cut))]
            truncated.append(len(q_cut) < len(q) or len(r_cut) < len(r) or len(a) < len(full_answer))
            for name, prompt in (("with", q_cut + r_cut + prompt_end), ("without", q_cut + prompt_end)):
                cols[f"{name}_input_ids"].append(prompt + a)
                cols[f"{name}_labels"].append([-100] * len(prompt) + a)
        out = {k: _ids_array(v) for k, v in cols.items()}
        out["truncated"] = pa.array(truncated)
        return pa.table(out)


class KILMTokenize(_Tokenize):
    """Rows of :func:`kgscale.samples.kilm.kilm_samples` -> ``input_ids`` (the
    noised source), ``labels`` (the original), ``decoder_input_ids`` (labels
    shifted right behind the decoder start token), ``description_mask``.

    Target: ``BOS <ent> name</ent><ent_desc> name<sep> description</ent_desc>
    context EOS``; source: the same with the description replaced by one mask
    and text infilling on the context. The noise is drawn from (seed, entity id)
    so a sample is the same in every run; ``prefix_length`` and
    ``context_ids`` let the training worker draw it afresh every epoch
    (:func:`renoise`, from (seed, epoch, entity id))."""

    def __init__(self, backbone: dict, special_tokens: tuple[str, ...], max_length: int, decoder_start_token_id: int,
                 mask_ratio: float = 0.3, poisson_lambda: float = 3.0, max_description_length: int = 64,
                 seed: int = 0) -> None:
        super().__init__(backbone, special_tokens, max_length)
        if self.tok.mask_token_id is None:
            raise ValueError("KILM needs a tokenizer with a mask token")
        self.mask = self.tok.mask_token_id
        self.bos = self.tok.bos_token_id
        self.start = decoder_start_token_id
        ent, ent_end, desc, desc_end, sep = (self.tok.convert_tokens_to_ids(t) for t in special_tokens)
        self.marks = (ent, ent_end, desc, desc_end, sep)
        self.ratio, self.lam, self.max_desc, self.seed = mask_ratio, poisson_lambda, max_description_length, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ent, ent_end, desc_start, desc_end, sep = self.marks
        names = token_ids(self.tok, [" " + n for n in batch["name"]])
        descs = token_ids(self.tok, [" " + d for d in batch["description"]])
        contexts = token_ids(self.tok, [" " + c for c in batch["context"]])
        bos = [self.bos] if self.bos is not None else []
        cols: dict[str, list] = {"input_ids": [], "labels": [], "decoder_input_ids": [], "description_mask": [],
                                 "prefix_length": [], "context_ids": [], "entity_id": []}
        truncated = []
        for eid, name, desc, ctx in zip(batch["entity_id"], names, descs, contexts):
            desc_cut = desc[: self.max_desc]
            head = bos + [ent] + name + [ent_end, desc_start] + name + [sep]
            room = self.max_length - len(head) - len(desc_cut) - 2  # </ent_desc>, EOS
            ctx_cut = ctx[: max(0, room)]
            truncated.append(len(desc_cut) < len(desc) or len(ctx_cut) < len(ctx))
            rng = np.random.default_rng([self.seed, int(eid)])
            target = head + desc_cut + [desc_end] + ctx_cut + [self.eos]
            source = head + [self.mask, desc_end] + text_infilling(ctx_cut, self.mask, self.ratio, self.lam, rng) + [self.eos]
            cols["input_ids"].append(source[: self.max_length])
            cols["prefix_length"].append(len(head) + 2)
            cols["context_ids"].append(ctx_cut)
            cols["entity_id"].append(int(eid))
            cols["labels"].append(target)
            cols["decoder_input_ids"].append([self.start] + target[:-1])
            cols["description_mask"].append([0] * len(head) + [1] * len(desc_cut) + [0] * (len(target) - len(head) - len(desc_cut)))
        out = {k: _ids_array(v) for k, v in cols.items() if k not in ("prefix_length", "entity_id")}
        out["prefix_length"] = pa.array(cols["prefix_length"], pa.int32())
        out["entity_id"] = pa.array(cols["entity_id"], pa.int64())
        out["truncated"] = pa.array(truncated)
        return pa.table(out)

    @staticmethod
    def epoch_noise(kwargs: dict) -> dict:
        """What :func:`renoise` needs from this stage's settings."""
        return {"ratio": kwargs["mask_ratio"], "poisson_lambda": kwargs["poisson_lambda"], "seed": kwargs["seed"],
                "max_length": kwargs["max_length"]}


def renoise(rows: dict[str, np.ndarray], epoch: int, mask_id: int, eos_id: int, ratio: float, poisson_lambda: float,
            seed: int, max_length: int) -> dict[str, np.ndarray]:
    """KILM's sources with text-infilling noise drawn for ``epoch`` (epoch 0
    keeps the tokeniser's own draw): the same description mask, new spans."""
    if epoch == 0:
        return rows
    sources = []
    for ids, prefix, ctx, eid in zip(rows["input_ids"], rows["prefix_length"], rows["context_ids"], rows["entity_id"]):
        rng = np.random.default_rng([seed, epoch, int(eid)])
        src = list(ids[: int(prefix)]) + text_infilling(list(ctx), mask_id, ratio, poisson_lambda, rng) + [eos_id]
        sources.append(np.asarray(src[:max_length], dtype=np.int32))
    out = dict(rows)
    col = np.empty(len(sources), dtype=object)
    col[:] = sources
    out["input_ids"] = col
    return out
