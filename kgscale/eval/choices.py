"""Multiple-choice QA by log-likelihood.

Each choice is scored by the log-probability the model gives its tokens as a
continuation of the prompt; the prediction is the choice with the highest
*mean* log-probability per token (length-normalised, so long choices are not
penalised for being long). The unnormalised sum is kept too (``acc_sum``).

Prompt (``PROMPT``), with the rationale first when one is given::

    [<rationale>\n]Question: <question>\nAnswer:

and the continuation is ``" " + choice``. Context and continuation are
tokenised separately and concatenated, so the continuation's tokens are
exactly those of the choice; a sequence longer than ``max_length`` loses
tokens from the left of the context.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kgscale.models.embed import pad_ids
from kgscale.models.tokenize import token_ids

PROMPT = "Question: {question}\nAnswer:"
CONTEXT = "{rationale}\n"


@dataclass
class MCQuestion:
    id: str
    question: str
    choices: list[str]
    labels: list[str]
    answer: int  # index into choices
    extra: dict = field(default_factory=dict)


def read_mc_jsonl(path: str | Path, rejects, limit: int | None = None, part: str = "all",
                  holdout: float = 0.5) -> list[MCQuestion]:
    """Questions of a JSONL file (``id``, ``question``, ``choices.label``,
    ``choices.text``, ``answer`` label) in ``part`` (:mod:`kgscale.kg.qa_parts`;
    ``limit`` counts within it); bad lines go to ``rejects`` (a
    :class:`kgscale.kg.rejects.RejectLog`) with their byte offset and reason."""
    from kgscale.kg.qa_parts import in_part

    out: list[MCQuestion] = []
    path = Path(path)
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            here, offset = offset, offset + len(raw)
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            if limit is not None and len(out) >= limit:
                break
            try:
                row = json.loads(line)
            except ValueError as exc:
                rejects.add(str(path), here, f"not JSON: {exc}", line[:200])
                continue
            reason = _check_row(row)
            if reason:
                rejects.add(str(path), here, reason, line[:200])
                continue
            labels = [str(x) for x in row["choices"]["label"]]
            # the questions stage's rule (kgscale.synth.questions_qa), so rationales join on it
            qid = str(row.get("id") if row.get("id") not in (None, "") else f"{path.name.split('.')[0]}:{lineno}")
            if not in_part(qid, part, holdout):
                continue
            out.append(MCQuestion(
                id=qid,
                question=str(row["question"]).strip(),
                choices=[str(x).strip() for x in row["choices"]["text"]],
                labels=labels,
                answer=labels.index(str(row["answer"])),
                extra={k: row[k] for k in ("question_concept",) if k in row},
            ))
    return out


def _check_row(row) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in ("question", "choices", "answer"):
        if key not in row:
            return f"missing field: {key}"
    ch = row["choices"]
    if not isinstance(ch, dict) or not isinstance(ch.get("label"), list) or not isinstance(ch.get("text"), list):
        return "choices must be an object with lists label and text"
    if len(ch["label"]) != len(ch["text"]) or len(ch["text"]) < 2:
        return "choices: label and text must have the same length, at least 2"
    if str(row["answer"]) not in [str(x) for x in ch["label"]]:
        return f"answer not among the labels: {row['answer']!r}"
    return None


def build_prompt(question: str, rationale: str | None = None) -> str:
    prompt = PROMPT.format(question=question)
    return CONTEXT.format(rationale=rationale.strip()) + prompt if rationale else prompt


@torch.inference_mode()
def continuation_logprobs(model, tokenizer, contexts: list[str], continuations: list[str], *,
                          max_length: int = 512, micro_batch: int = 16, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(sum of log p(continuation tokens | context), number of continuation
    tokens) for each pair. Only the continuation positions go through the
    vocabulary projection."""
    n = len(contexts)
    seqs, n_cont = [], np.zeros(n, dtype=np.int64)
    fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    for i, (ctx, cont) in enumerate(zip(contexts, continuations)):
        c = tokenizer(ctx, add_special_tokens=True)["input_ids"] or [fallback]
        k = tokenizer(cont, add_special_tokens=False)["input_ids"]
        k = k[: max_length - 1]
        seq = (c + k)[-max_length:]
        seqs.append(seq)
        n_cont[i] = len(k)
    backbone = getattr(model, model.base_model_prefix, model)
    head = model.get_output_embeddings()
    sums = np.zeros(n, dtype=np.float64)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fallback
    for lo in range(0, n, micro_batch):
        idx = order[lo:lo + micro_batch]
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[r, : len(seqs[i])] = 1
        hidden = backbone(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        rows, pos = [], []
        for r, i in enumerate(idx):
            end = len(seqs[i])
            for p in range(end - int(n_cont[i]), end):
                rows.append(r)
                pos.append(p)
        if not rows:
            continue
        rows_t, pos_t = torch.tensor(rows), torch.tensor(pos)
        # the token at p is predicted from the state at p - 1
        logits = head(hidden[rows_t.to(device), (pos_t - 1).to(device)]).float()
        lp = torch.log_softmax(logits, dim=-1).gather(1, ids[rows_t, pos_t].to(device)[:, None])[:, 0]
        per_row = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, rows_t, lp.double().cpu())
        sums[idx] = per_row.numpy()
    return sums, n_cont


@torch.inference_mode()
def choice_logprobs(model, tokenizer, contexts: list[str], choices: list[list[str]], *,
                    max_length: int = 512, micro_batch: int = 16, device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`continuation_logprobs` for each context and every one of its
    choices, with the context run once: its keys and values (the KV cache)
    are shared by its choices, so a question with 5 one-word choices costs
    one pass over its prompt instead of five. Per context (sums, token counts).

    A micro-batch holds contexts until their choices reach ``micro_batch``
    rows (at least one context), right-padded; each choice's positions
    continue its own context's (``position_ids``), so padding changes nothing.
    A context that with one of its choices exceeds ``max_length`` goes through
    :func:`continuation_logprobs`, which cuts the context from the left."""
    fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fallback
    ctx_ids = [tokenizer(c, add_special_tokens=True)["input_ids"] or [fallback] for c in contexts]
    cont_ids = [[x[: max_length - 1] for x in token_ids(tokenizer, ch)] for ch in choices]
    out: list = [None] * len(contexts)
    long_rows = [i for i in range(len(contexts))
                 if cont_ids[i] and len(ctx_ids[i]) + max(len(k) for k in cont_ids[i]) > max_length]
    for i in long_rows:
        out[i] = continuation_logprobs(model, tokenizer, [contexts[i]] * len(choices[i]), choices[i],
                                       max_length=max_length, micro_batch=micro_batch, device=device)
    backbone = getattr(model, model.base_model_prefix, model)
    head = model.get_output_embeddings()
    skip = set(long_rows)
    order = [i for i in np.argsort([len(c) for c in ctx_ids], kind="stable").tolist() if i not in skip]
    lo = 0
    while lo < len(order):
        hi, rows = lo, 0
        while hi < len(order) and (hi == lo or rows + len(cont_ids[order[hi]]) <= micro_batch):
            rows += len(cont_ids[order[hi]])
            hi += 1
        group, lo = order[lo:hi], hi
        _score_group(backbone, head, [ctx_ids[i] for i in group], [cont_ids[i] for i in group], pad, device,
                     out, group)
    return out


def _score_group(backbone, head, ctxs: list[list[int]], conts: list[list[list[int]]], pad: int, device: str,
                 out: list, where: list[int]) -> None:
    """One micro-batch of :func:`choice_logprobs`: the contexts in one pass
    with their cache kept, then every choice of every context in a second."""
    from transformers import DynamicCache

    b = len(ctxs)
    ids, mask = pad_ids(ctxs, pad)
    cache = DynamicCache()
    res = backbone(input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache, use_cache=True)
    last = res.last_hidden_state[torch.arange(b), torch.tensor([len(c) - 1 for c in ctxs]).to(device)]  # [b, H]
    owner = [r for r, ks in enumerate(conts) for _ in ks]
    flat = [k for ks in conts for k in ks]
    if not flat:
        for i in where:
            out[i] = (np.zeros(0), np.zeros(0, dtype=np.int64))
        return
    n = len(flat)
    # every choice empty: one pad column that scores nothing
    k_ids, k_mask = pad_ids(flat, pad) if any(flat) else (torch.full((n, 1), pad), torch.zeros((n, 1), dtype=torch.long))
    kw = k_ids.shape[1]
    own = torch.tensor(owner)
    cache.batch_select_indices(own.to(device))
    pos = torch.tensor([len(ctxs[r]) for r in owner])[:, None] + torch.arange(kw)[None, :]
    hidden = backbone(input_ids=k_ids.to(device), attention_mask=torch.cat([mask[own], k_mask], 1).to(device),
                      position_ids=pos.to(device), past_key_values=cache, use_cache=True).last_hidden_state
    # token t of a choice is predicted from the state before it: the context's
    # last for t = 0, the choice's own at t - 1 after that
    states = torch.cat([last[own.to(device)][:, None], hidden[:, :-1]], 1)  # [n, kw, H]
    sel = k_mask.bool().to(device)
    lp = torch.log_softmax(head(states[sel]).float(), dim=-1).gather(1, k_ids.to(device)[sel][:, None])[:, 0]
    row_of = torch.arange(n)[:, None].expand(n, kw)[k_mask.bool()]
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, row_of, lp.double().cpu()).numpy()
    counts = k_mask.sum(1).numpy().astype(np.int64)
    j = 0
    for r, i in enumerate(where):
        m = len(conts[r])
        out[i] = (sums[j:j + m], counts[j:j + m])
        j += m


class ChoiceScorer:
    """Ray Data callable class: rows with ``context`` (the prompt) and
    ``choices`` (list of strings) -> adds ``logprob`` and ``ntokens`` (lists,
    one entry a choice)."""

    def __init__(self, model: dict, max_length: int = 512, micro_batch: int = 16, num_threads: int | None = None,
                 dtype: str = "auto") -> None:
        from kgscale.models.backbone import BackboneConfig
        from kgscale.models.embed import torch_dtype
        from kgscale.models.inference import load_for_inference

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer, self.model, kind = load_for_inference(BackboneConfig(**model),
                                                              dtype=torch_dtype(dtype, self.device))
        if kind != "causal":
            raise ValueError(f"multiple-choice scoring needs a causal LM; {model['model']!r} is {kind}")
        self.model.to(self.device)
        self.max_length, self.micro_batch = max_length, micro_batch

    def __call__(self, batch):
        import pyarrow as pa

        contexts = batch.column("context").to_pylist()
        choices = batch.column("choices").to_pylist()
        scored = choice_logprobs(self.model, self.tokenizer, contexts, [[" " + x for x in ch] for ch in choices],
                                 max_length=self.max_length, micro_batch=self.micro_batch, device=self.device)
        lp = [s.tolist() for s, _ in scored]
        nt = [c.tolist() for _, c in scored]
        return batch.append_column("logprob", pa.array(lp, pa.list_(pa.float64()))).append_column(
            "ntokens", pa.array(nt, pa.list_(pa.int64())))


def predictions(logprob: list[list[float]], ntokens: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(prediction by mean log-prob per token, prediction by sum) per question."""
    by_mean = np.array([int(np.argmax(np.asarray(lp) / np.maximum(np.asarray(nt), 1))) for lp, nt in zip(logprob, ntokens)])
    by_sum = np.array([int(np.argmax(lp)) for lp in logprob])
    return by_mean, by_sum
