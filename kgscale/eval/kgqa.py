"""Generation-based KGQA: prompt with a question, generate, score against
every correct answer.

Questions come from a file (JSONL or Parquet with ``question`` and
``answers``, a list of answer names; ``id`` or ``question_id`` optional), for
example the k-hop questions that ``kgscale`` synthesises from a KG, or are
synthesised here from a snapshot's test triples as 1-hop questions whose
answers are *all* tails the graph gives for (head, relation), every split.

Scores, after SQuAD-style normalisation (lower case, no punctuation, no
articles, single spaces):

- **exact match**: the first answer in the generation (its first line, cut
  at the first ``,`` or ``;``) equals one of the correct answers;
- **Hits@1**: one of the correct answers occurs in the generation as whole
  words (the lenient "answer appears in the output" rule used by RoG and
  later generation-based KGQA work).
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path

import numpy as np
import torch

QUESTION = "What entity completes the fact ({head}, {relation}, ?)? Answer with its name only."

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(text: str) -> str:
    text = (text or "").lower().replace("_", " ").translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_answer(generation: str) -> str:
    line = (generation or "").strip().split("\n", 1)[0]
    return re.split(r"[,;]", line, maxsplit=1)[0]


def score(generation: str, answers: list[str]) -> tuple[bool, bool]:
    """(exact match, Hits@1) of one generation against all correct answers."""
    gold = {normalize(a) for a in answers if normalize(a)}
    pred = normalize(first_answer(generation))
    padded = f" {normalize(generation)} "
    return pred in gold, any(f" {a} " in padded for a in gold)


def read_questions(path: str | Path, rejects, limit: int | None = None) -> list[dict]:
    """Rows ``{"id", "question", "answers"}``; rows without a question or
    without answers go to ``rejects``."""
    path = Path(path)
    rows: list[tuple[int, dict | None, str]] = []
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = [(i, r, "") for i, r in enumerate(pq.read_table(path).to_pylist())]
    else:
        offset = 0
        with open(path, "rb") as f:
            for raw in f:
                here, offset = offset, offset + len(raw)
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                try:
                    rows.append((here, json.loads(line), line))
                except ValueError as exc:
                    rejects.add(str(path), here, f"not JSON: {exc}", line[:200])
    out = []
    for where, row, line in rows:
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(row, dict) or not str(row.get("question") or "").strip():
            rejects.add(str(path), where, "missing field: question", line[:200])
            continue
        answers = row.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not answers or not all(isinstance(a, str) for a in answers):
            rejects.add(str(path), where, "missing field: answers (a list of names)", line[:200])
            continue
        qid = row.get("id", row.get("question_id"))
        out.append({"id": str(qid) if qid is not None else f"{path.stem}:{len(out)}",
                    "question": str(row["question"]).strip(), "answers": list(answers)})
    return out


def questions_from_snapshot(snapshot, split: str = "test", limit: int | None = None, seed: int = 0) -> list[dict]:
    """One question per distinct (head, relation) of ``split`` (a sample of
    ``limit`` when given), answered by every tail of (head, relation) in the
    whole snapshot whose entity has a name."""
    from kgscale.kg.answers import AnswerIndex

    t = snapshot.triples(split)
    head, rel = t["head"].to_numpy().astype(np.int64), t["relation"].to_numpy().astype(np.int64)
    pairs = np.unique(np.stack([head, rel], 1), axis=0) if len(head) else np.zeros((0, 2), np.int64)
    if limit is not None and len(pairs) > limit:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), size=limit, replace=False))]
    index = AnswerIndex.from_snapshot(snapshot)
    names = [(n or "").strip() for n in snapshot.entities["name"].to_pylist()]
    rel_texts = [(x or k).strip() for x, k in zip(snapshot.relations["text"].to_pylist(), snapshot.relations["key"].to_pylist())]
    out = []
    for h, r in pairs:
        answers = sorted({names[a] for a in index.answers_of(int(h), int(r), False) if names[a]})
        if not names[h] or not answers:
            continue
        out.append({"id": f"{split}:{h}:{r}", "question": QUESTION.format(head=names[h], relation=rel_texts[r]),
                    "answers": answers})
    return out


class Generator:
    """Ray Data callable class: ``question`` -> ``generation`` (greedy; the
    chat template when the tokenizer has one)."""

    def __init__(self, model: dict, max_new_tokens: int = 16, micro_batch: int = 16, num_threads: int | None = None,
                 dtype: str = "auto", chat_template: bool = True) -> None:
        from kgscale.models.backbone import BackboneConfig
        from kgscale.models.embed import torch_dtype
        from kgscale.models.inference import load_for_inference

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer, self.model, self.kind = load_for_inference(BackboneConfig(**model),
                                                                   dtype=torch_dtype(dtype, self.device))
        self.model.to(self.device)
        self.tokenizer.padding_side = "left"
        self.chat = chat_template and bool(getattr(self.tokenizer, "chat_template", None)) and self.kind == "causal"
        self.max_new_tokens, self.micro_batch = max_new_tokens, micro_batch

    def prompt(self, question: str) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                      add_generation_prompt=True)
        return f"Question: {question}\nAnswer:"

    @torch.inference_mode()
    def generate(self, questions: list[str]) -> list[str]:
        out = []
        for lo in range(0, len(questions), self.micro_batch):
            prompts = [self.prompt(q) for q in questions[lo:lo + self.micro_batch]]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not self.chat)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
            if self.kind == "causal":
                ids = ids[:, enc["input_ids"].shape[1]:]
            out.extend(self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return [o.strip() for o in out]

    def __call__(self, batch):
        import pyarrow as pa

        gens = self.generate(batch.column("question").to_pylist())
        return batch.append_column("generation", pa.array(gens, pa.string()))
