"""Teachers that write a rationale from a question, its answer and KG paths.

Three kinds, one interface (``teach(messages_list, rows) -> list[Result]``):

- ``hf``: a local Hugging Face causal LM (any model
  :mod:`kgscale.models.backbone` loads: ``smollm2-135m-instruct``, a local
  directory, a hub id, ``tiny-llama`` for tests), batched greedy or sampled
  generation, through the model's chat template when it has one;
- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` endpoint
  (vLLM, llama.cpp's server, TGI, a hosted API), with a thread pool of
  concurrent requests, a timeout per request, and retries with exponential
  backoff on timeouts, connection errors, 429 and 5xx;
- ``verbaliser``: no model; the deterministic path verbaliser
  (:func:`kgscale.synth.verbalise.verbalise_rationale`). It is the default,
  so the stage always works without a teacher.

A call that still fails after its retries is a :class:`Result` with an
``error``; the stage records it as rejected with that reason.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from kgscale.config import StrictModel
from kgscale.synth.linking import normalise
from kgscale.synth.verbalise import format_facts, format_paths, verbalise_rationale

DEFAULT_SYSTEM = "You are a careful teacher. You explain why an answer is right using the facts you are given."

# Facts as plain triples, the question, and the answer stated outright: a
# small teacher (SmolLM2-135M) asked to *choose* among choices ignores the
# given answer, and reads "a --r--> b" path notation poorly.
DEFAULT_TEMPLATE = """Facts from a knowledge graph:
{facts}

Question: {question}
Correct answer: {answer}

Explain in one or two sentences why "{answer}" is the correct answer, using the facts above."""


class TeacherConfig(StrictModel):
    kind: Literal["verbaliser", "hf", "openai"] = "verbaliser"
    # hf: a model kgscale.models.backbone loads; openai: the model name the endpoint serves
    model: str | None = Field(None, validate_default=True)
    # openai: the API root, e.g. http://127.0.0.1:8000/v1 (the client posts to {base_url}/chat/completions)
    base_url: str | None = Field(None, validate_default=True)
    # openai: environment variable holding the bearer token (never the token itself)
    api_key_env: str | None = None
    system_prompt: str = DEFAULT_SYSTEM
    # placeholders: {question} {choices} ("Choices: A) ..; B) .." or empty) {answer}
    # {paths} (numbered path texts) {facts} (each step of the paths as a triple, once)
    prompt_template: str = DEFAULT_TEMPLATE
    # paths shown to the teacher, cheapest first
    max_paths: int = Field(5, ge=1)
    max_new_tokens: int = Field(160, ge=1)
    # 0: greedy decoding
    temperature: float = Field(0.0, ge=0)
    # hf: >1 discourages the loops small models fall into
    repetition_penalty: float = Field(1.0, gt=0)
    # questions per actor call (hf: one generate call)
    batch_size: int = Field(8, ge=1)
    # teacher actors
    workers: int = Field(1, ge=1)
    # CPUs each actor reserves (hf: torch threads)
    cpus_per_worker: float = Field(1.0, gt=0)
    # openai: requests in flight per actor, seconds per request, retries after the first attempt
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    # first retry waits this long, each further one twice as long (at most 30 s)
    backoff_s: float = Field(1.0, ge=0)
    seed: int = 0

    # cross-field checks as field validators, so an error names the dotted key
    # (fields validate in order: kind comes before model and base_url)
    @field_validator("model", "base_url")
    @classmethod
    def _needed(cls, value, info: ValidationInfo):
        kind = info.data.get("kind")
        if value is None and (kind == "openai" or (kind == "hf" and info.field_name == "model")):
            example = " (e.g. smollm2-135m-instruct)" if kind == "hf" else ""
            raise ValueError(f"required when kind is {kind}{example}")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(question="q", choices="c", answer="a", paths="p", facts="f")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{question}} {{choices}} {{answer}} {{paths}} {{facts}} may appear ({exc})") from None
        return value

    def teacher_id(self) -> str:
        if self.kind == "hf":
            return f"hf:{self.model}"
        if self.kind == "openai":
            return f"openai:{self.model}@{self.base_url}"
        return "verbaliser"


@dataclass
class Result:
    rationale: str | None = None
    error: str | None = None
    attempts: int = 1


def build_messages(row: dict, cfg: TeacherConfig) -> list[dict]:
    """The chat messages for one question (a row of paths.parquet)."""
    choices = row.get("choices") or []
    choices_text = "Choices: " + "; ".join(f"{chr(65 + i)}) {c}" for i, c in enumerate(choices)) + "\n" if choices else ""
    shown = row["paths"][: cfg.max_paths]
    user = cfg.prompt_template.format(
        question=row["question"], choices=choices_text, answer=row["answer"],
        paths=format_paths(shown), facts=format_facts(shown),
    )
    return [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": user}]


def prompt_sha256(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def mentions_path_entity(rationale: str, paths: list[dict], answer: str = "") -> bool:
    """Whether the rationale names at least one entity on its paths (whole
    words, normalised). Names that are part of the answer do not count:
    restating the answer says nothing about the paths."""
    text = f" {normalise(rationale)} "
    said = f" {normalise(answer)} "
    for path in paths:
        for name in path["names"]:
            key = normalise(name)
            if key and f" {key} " in text and f" {key} " not in said:
                return True
    return False


# --------------------------------------------------------------------------
# the three kinds
# --------------------------------------------------------------------------


class VerbaliserTeacher:
    def __init__(self, cfg: TeacherConfig) -> None:
        self.cfg = cfg

    def teach(self, messages: list[list[dict]], rows: list[dict]) -> list[Result]:
        return [Result(verbalise_rationale(r["question"], r["answer"], r["paths"][: self.cfg.max_paths])) for r in rows]


class HFTeacher:
    """A local causal LM, batched, left-padded, through the chat template when there is one."""

    def __init__(self, cfg: TeacherConfig) -> None:
        import torch

        from kgscale.models.backbone import BackboneConfig, load_model, load_tokenizer

        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
        backbone = BackboneConfig(model=cfg.model, kind="causal", seed=cfg.seed)
        self.cfg = cfg
        self.tok = load_tokenizer(backbone)
        self.tok.padding_side = "left"  # generation appends on the right
        self.model = load_model(backbone)
        self.torch = torch

    def _render(self, messages: list[dict]) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\nExplanation:"

    def teach(self, messages: list[list[dict]], rows: list[dict]) -> list[Result]:
        texts = [self._render(m) for m in messages]
        # the chat template already adds BOS and the like
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=not getattr(self.tok, "chat_template", None))
        kwargs = {"max_new_tokens": self.cfg.max_new_tokens, "pad_token_id": self.tok.pad_token_id,
                  "repetition_penalty": self.cfg.repetition_penalty}
        if self.cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.cfg.temperature)
            self.torch.manual_seed(self.cfg.seed)
        else:
            kwargs.update(do_sample=False)
        with self.torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        for seq in self.tok.batch_decode(new, skip_special_tokens=True):
            seq = seq.strip()
            results.append(Result(seq) if seq else Result(error="teacher returned an empty rationale"))
        return results


class OpenAITeacher:
    """Any OpenAI-compatible chat completions endpoint, with retries."""

    def __init__(self, cfg: TeacherConfig) -> None:
        import requests

        from kgscale.config import secret_from_env

        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        if cfg.api_key_env:
            token = secret_from_env(cfg.api_key_env, what="teacher.api_key_env")
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency)
        self.requests = requests

    def _one(self, messages: list[dict]) -> Result:
        body = {"model": self.cfg.model, "messages": messages, "max_tokens": self.cfg.max_new_tokens,
                "temperature": self.cfg.temperature, "seed": self.cfg.seed}
        attempts = 1 + self.cfg.max_retries
        last = "no attempt"
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(min(30.0, self.cfg.backoff_s * 2 ** (attempt - 2)))
            try:
                resp = self.session.post(self.url, json=body, timeout=self.cfg.timeout_s)
            except self.requests.Timeout:
                last = f"teacher timed out after {attempt} attempt(s): no answer within {self.cfg.timeout_s:g} s"
                continue
            except self.requests.ConnectionError as exc:
                last = f"teacher connection failed after {attempt} attempt(s): {type(exc).__name__}"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"teacher HTTP {resp.status_code} after {attempt} attempt(s): {resp.text[:200]}"
                continue
            if resp.status_code != 200:
                # a request the endpoint refuses (bad model name, bad key) will not get better
                return Result(error=f"teacher HTTP {resp.status_code}: {resp.text[:200]}", attempts=attempt)
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                return Result(error=f"teacher response malformed: {resp.text[:200]}", attempts=attempt)
            content = (content or "").strip()
            if not content:
                return Result(error="teacher returned an empty rationale", attempts=attempt)
            return Result(content, attempts=attempt)
        return Result(error=last, attempts=attempts)

    def teach(self, messages: list[list[dict]], rows: list[dict]) -> list[Result]:
        return list(self.pool.map(self._one, messages))


def make_teacher(cfg: TeacherConfig):
    return {"verbaliser": VerbaliserTeacher, "hf": HFTeacher, "openai": OpenAITeacher}[cfg.kind](cfg)
