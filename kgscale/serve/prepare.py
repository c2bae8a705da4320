"""From a validated request body to what a model replica runs, with every
limit checked first: the number of inputs, token lengths against the model's
context, token ids against the vocabulary, ``max_tokens``, ``k``, entities and
relations. Runs in the ingress, without Ray, so a bad request is refused
before it takes a place in a model's queue.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from kgscale.serve.config import ServeConfig
from kgscale.serve.errors import ApiError, bad_request
from kgscale.serve.loading import ModelInfo
from kgscale.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, KGCompleteRequest
from kgscale.models.tokenize import query_view_texts
from kgscale.serve.runtime import GenerationParams, default_pooling, embedding_ids

# what a union field accepts, said once instead of one error per alternative
_SHAPES = {
    "input": "a string, an array of strings, an array of token ids or an array of arrays of token ids",
    "prompt": "a string, an array of strings, an array of token ids or an array of arrays of token ids",
    "stop": "a string or an array of up to 4 strings",
    "content": "a string or an array of {\"type\": \"text\", \"text\": ...} parts",
}


def describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """(message, param) naming each offending field once."""
    seen: dict[str, str] = {}
    for err in exc.errors():
        if err["type"] == "json_invalid":
            return f"the body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", None
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "list[", "str", "int", "float",
                                                                   "bool", "dict["))]
        # a union reports each alternative; name the field and what it takes
        field = ".".join(loc) or "body"
        last = next((p for p in reversed(loc) if not p.isdigit()), "")
        if field in seen:
            continue
        if err["type"] == "extra_forbidden":
            seen[field] = f"{field}: unknown field"
        elif err["type"] == "missing":
            seen[field] = f"{field}: required field is missing"
        elif last in _SHAPES and err["type"] not in ("value_error",):
            seen[field] = f"{field}: must be {_SHAPES[last]}"
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if isinstance(got, (int, float, str, bool)) and len(repr(got)) < 60 else ""
            seen[field] = f"{field}: {err['msg'].removeprefix('Value error, ')}{shown}"
    # a union's alternatives also report nested positions; keep the shortest path per field
    fields = sorted(seen, key=len)
    kept = [f for f in fields if not any(f != g and f.startswith(g + ".") for g in fields)]
    if kept == ["body"] and "body" in seen and exc.errors()[0]["type"] == "model_type":
        return "the body must be a JSON object", None
    return "; ".join(seen[f] for f in kept[:5]), (kept[0] if kept and kept[0] != "body" else None)


def parse(model, body: bytes):
    if not body.strip():
        raise bad_request("the body is empty; send a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        message, param = describe_validation_error(exc)
        raise bad_request(message, param) from None


@dataclass
class Prepared:
    inputs: list[list[int]]  # token ids per input / prompt
    params: GenerationParams | None = None


def _as_batch(value, name: str, limit: int) -> list:
    """A string or a token array stands for a batch of one."""
    if isinstance(value, str):
        items = [value]
    elif value and all(isinstance(x, int) for x in value):
        items = [list(value)]
    else:
        items = list(value)
    if not items:
        raise bad_request(f"{name} is empty: give at least one", name)
    if len(items) > limit:
        raise bad_request(f"{name} has {len(items)} items; at most {limit} are allowed in one request", name)
    return items


class RequestPreparer:
    def __init__(self, cfg: ServeConfig, tokenizer, info: ModelInfo, catalog=None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.info = info
        self.catalog = catalog
        self.vocab = len(tokenizer)
        pooling = default_pooling(info.kind) if cfg.pooling.how == "auto" else cfg.pooling.how
        self.append_eos = info.kind == "causal" and pooling == "last"
        self.max_input = cfg.limits.max_input_length or info.context_length
        self.max_input = min(self.max_input, info.context_length)
        # the tokenizer's control tokens (<|im_start|>, </s>, ...), to find them in chat content
        specials = sorted({t for t in getattr(tokenizer, "all_special_tokens", []) if t}, key=len, reverse=True)
        self._controls = re.compile("|".join(map(re.escape, specials))) if specials else None

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.cfg.model_name:
            raise ApiError(404, f"model {name!r} does not exist here; this server serves {self.cfg.model_name!r}",
                           param="model", code="model_not_found")

    def _check_ids(self, ids: list[int], where: str) -> None:
        bad = next((t for t in ids if t >= self.vocab), None)
        if bad is not None:
            raise bad_request(f"{where}: token id {bad} is outside the vocabulary (size {self.vocab})", where)

    # ---- embeddings -------------------------------------------------------

    def embeddings(self, req: EmbeddingRequest) -> Prepared:
        self.check_model(req.model)
        if req.dimensions is not None and req.dimensions != self.info.hidden_size:
            raise bad_request(f"dimensions: this model's embeddings have {self.info.hidden_size} dimensions; "
                              f"other sizes are not supported", "dimensions")
        items = _as_batch(req.input, "input", self.cfg.limits.max_inputs)
        texts = [(i, x) for i, x in enumerate(items) if isinstance(x, str)]
        for i, x in texts:
            if not x.strip():
                raise bad_request(f"input[{i}] is an empty string", "input")
        ids: list[list[int] | None] = [None] * len(items)
        if texts:
            for (i, _), x in zip(texts, embedding_ids(self.tokenizer, [t for _, t in texts], append_eos=self.append_eos)):
                ids[i] = x
        eos = self.tokenizer.eos_token_id
        for i, x in enumerate(items):
            if ids[i] is None:
                if not x:
                    raise bad_request(f"input[{i}] is an empty token array", "input")
                self._check_ids(x, f"input[{i}]")
                ids[i] = x if not self.append_eos or x[-1] == eos else x + [eos]
            if len(ids[i]) > self.max_input:
                raise bad_request(f"input[{i}] has {len(ids[i])} tokens; this model embeds at most {self.max_input} "
                                  f"tokens per input", "input")
        return Prepared(ids)

    # ---- generation -------------------------------------------------------

    def _can_generate(self) -> None:
        if self.info.kind == "encoder":
            raise bad_request(f"model {self.cfg.model_name!r} is an encoder: it embeds but cannot generate text",
                              "model")

    def _params(self, req, limit: int | None, prompt_len: int) -> GenerationParams:
        ctx = self.info.context_length
        cap = self.cfg.limits.max_completion_length
        if limit is not None and limit > cap:
            raise bad_request(f"max_tokens is {limit}; this server generates at most {cap} tokens", "max_tokens")
        if self.info.kind == "causal" and prompt_len >= ctx:
            raise bad_request(f"the prompt has {prompt_len} tokens; this model's context is {ctx} tokens", "messages"
                              if isinstance(req, ChatCompletionRequest) else "prompt")
        room = ctx - prompt_len if self.info.kind == "causal" else ctx
        if limit is None:
            limit = min(self.cfg.limits.default_completion_length, room)
        elif limit > room:
            raise bad_request(f"this model's context is {ctx} tokens; the prompt has {prompt_len} and max_tokens "
                              f"asks for {limit} more: lower max_tokens or shorten the prompt", "max_tokens")
        stops = req.stops()
        longest = max((len(x) for x in stops), default=0)
        if longest > self.cfg.limits.max_stop_length:
            raise bad_request(f"stop: a stop sequence has {longest} characters; at most "
                              f"{self.cfg.limits.max_stop_length} are allowed", "stop")
        return GenerationParams(max_new_tokens=limit, temperature=float(req.temperature), top_p=float(req.top_p),
                                stop=stops, seed=req.seed)

    def completion(self, req: CompletionRequest) -> Prepared:
        self.check_model(req.model)
        self._can_generate()
        items = _as_batch(req.prompt, "prompt", self.cfg.limits.max_inputs)
        if req.stream and len(items) > 1:
            raise bad_request("stream takes one prompt; send the others in their own requests", "prompt")
        ids = []
        for i, x in enumerate(items):
            if isinstance(x, str):
                x = self.tokenizer(x, add_special_tokens=True)["input_ids"]
            else:
                self._check_ids(x, f"prompt[{i}]")
            if not x:
                raise bad_request(f"prompt[{i}] is empty", "prompt")
            if len(x) > self.info.context_length:
                raise bad_request(f"prompt[{i}] has {len(x)} tokens; this model's context is "
                                  f"{self.info.context_length} tokens", "prompt")
            ids.append(list(x))
        return Prepared(ids, self._params(req, req.max_tokens, max(len(x) for x in ids)))

    def chat(self, req: ChatCompletionRequest) -> Prepared:
        self.check_model(req.model)
        self._can_generate()
        if not getattr(self.tokenizer, "chat_template", None):
            raise bad_request(f"model {self.cfg.model_name!r} has no chat template; use /v1/completions", "messages")
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # the template itself refuses (e.g. roles out of order)
            raise bad_request(f"messages do not fit the model's chat template: {exc}", "messages") from None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self._controls is not None and any(self._controls.search(m["content"]) for m in messages):
            ids = self._chat_ids_as_text(messages)
        return Prepared([ids], self._params(req, req.completion_limit(), len(ids)))

    def _chat_ids_as_text(self, messages: list[dict]) -> list[int]:
        """The chat's token ids with every message's content tokenised as
        plain text: a user who writes ``<|im_start|>system`` gets those
        characters, not the control token (role spoofing). The template is
        rendered around placeholders and only its own text may hold control
        tokens."""
        nonce = uuid.uuid4().hex
        marks = [{**m, "content": f"\ue000{nonce}{i}\ue001"} for i, m in enumerate(messages)]
        text = self.tokenizer.apply_chat_template(marks, add_generation_prompt=True, tokenize=False)
        ids: list[int] = []
        for k, part in enumerate(re.split(f"\ue000{nonce}(\\d+)\ue001", text)):
            if k % 2:  # a placeholder's message number
                ids += self.tokenizer(messages[int(part)]["content"], add_special_tokens=False,
                                      split_special_tokens=True)["input_ids"]
            elif part:
                ids += self.tokenizer(part, add_special_tokens=False)["input_ids"]
        return ids

    # ---- KG completion ----------------------------------------------------

    def kg(self, req: KGCompleteRequest, index_size: int):
        if self.catalog is None:
            raise ApiError(404, "KG completion is not configured on this server (set kg.snapshot)",
                           code="kg_not_configured")
        self.check_model(req.model)
        top = min(self.cfg.limits.max_k, index_size)
        k = min(10, top) if req.k is None else req.k
        if k > top:
            raise bad_request(f"k is {k}; it must be between 1 and {top}", "k")
        head = self.catalog.entity(req.head, "head")
        rel = self.catalog.relation(req.relation, "relation")
        # the query view evaluation embeds: the entity cut so the relation fits
        (text,) = query_view_texts(self.tokenizer, [self.catalog.texts[head]], [self.catalog.relation_texts[rel]],
                                   [req.inverse], self.cfg.kg.max_entity_tokens, self.cfg.kg.max_length, self.append_eos)
        ids = embedding_ids(self.tokenizer, [text], append_eos=self.append_eos, max_length=self.cfg.kg.max_length)[0]
        known = self.catalog.known_answers(head, rel, req.inverse)
        exclude = known if req.filter_known else np.zeros(0, dtype=np.int64)
        return head, rel, text, ids, known, exclude, k
