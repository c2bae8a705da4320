"""The model inside one replica: embeddings and generation over token ids.

Plain PyTorch, no Ray, so it is tested on its own; the Serve deployment
(:mod:`kgscale.serve.deployments`) batches requests into calls of it.

Embeddings follow training and evaluation: a causal LM (KaLM) is read at the
final token of the text followed by EOS, the last-layer hidden state there;
an encoder (MiniLM) or an encoder-decoder's encoder by the mean over tokens;
both L2-normalised (:mod:`kgscale.models.pooling`). Inputs arrive as token
ids made by :func:`embedding_ids`, which the ingress also uses to check
lengths, so what is checked is what runs.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from kgscale.models.backbone import BackboneConfig


def default_pooling(kind: str) -> str:
    return "last" if kind == "causal" else "mean"


def embedding_ids(tokenizer, texts: list[str], *, append_eos: bool, max_length: int | None = None) -> list[list[int]]:
    """Token ids of each text as the embedding model reads it: the one view
    encoding training and evaluation use (:func:`kgscale.models.tokenize.view_ids`)."""
    from kgscale.models.tokenize import view_ids

    return view_ids(tokenizer, list(texts), max_length, append_eos)


@dataclass(frozen=True)
class GenerationParams:
    """What one generation asks for; requests with equal params share a batch."""
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class GenerationOutput:
    text: str
    finish_reason: str  # "stop" (EOS or a stop sequence) | "length"
    prompt_tokens: int
    completion_tokens: int


def _first_stop(text: str, stops: tuple[str, ...]) -> int:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


class StreamText:
    """Turns generated ids into text deltas as they come: decodes the whole
    completion each step (a token may change how earlier bytes decode), holds
    back a possibly unfinished UTF-8 character and any tail that could be the
    start of a stop sequence, and ends at the first stop sequence or EOS."""

    def __init__(self, tokenizer, stops: tuple[str, ...], eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.eos_ids = eos_ids
        self.ids: list[int] = []
        self.emitted = 0
        self.out = ""  # the text handed out so far
        self.stopped = False  # a stop sequence or EOS was reached
        self.hold = max((len(s) for s in stops), default=1) - 1

    def add(self, ids: list[int]) -> str:
        if self.stopped:
            return ""
        for t in ids:
            if t in self.eos_ids:
                self.stopped = True
                break
            self.ids.append(t)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = _first_stop(text, self.stops)
        if cut >= 0:
            self.stopped = True
            return self._emit(text[:cut])
        if self.stopped:  # EOS: everything left is final
            return self._emit(text)
        end = len(text) - self.hold
        while end > self.emitted and text[end - 1] == "\ufffd":
            end -= 1
        return self._emit(text[:end]) if end > self.emitted else ""

    def finish(self) -> str:
        """What is still held back once generation has ended."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = _first_stop(text, self.stops)
        return self._emit(text[:cut] if cut >= 0 else text)

    def _emit(self, upto: str) -> str:
        delta = upto[self.emitted:]
        self.emitted = max(self.emitted, len(upto))
        self.out += delta
        return delta


class ModelRuntime:
    """A loaded model: ``embed`` and ``generate`` over batches of token ids,
    ``stream`` for one prompt. Not thread-safe: the deployment runs every call
    on one worker thread."""

    def __init__(self, model: BackboneConfig, *, pooling: str = "auto", device: str = "auto", dtype: str = "auto",
                 torch_threads: int | None = None, micro_batch: int = 64) -> None:
        from kgscale.models.inference import load_for_inference
        from kgscale.serve.loading import describe

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        from kgscale.models.embed import torch_dtype as inference_dtype
        from kgscale.models.towers import key_tower_dir

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        # auto: bf16 on GPUs and on CPUs with bf16 matrix units (kgscale.models.precision)
        torch_dtype = inference_dtype(dtype, self.device)
        self.info = describe(model)
        self.kind = self.info.kind
        self.tokenizer, self.model, _ = load_for_inference(model, dtype=torch_dtype)
        self.model.to(self.device).eval()
        # hidden states only: a causal LM's vocabulary projection at every
        # position would cost more than the rest of an embedding pass
        if self.kind == "seq2seq":
            self.body = self.model.get_encoder()
        else:
            self.body = getattr(self.model, getattr(self.model, "base_model_prefix", ""), self.model)
        # a two-tower model embeds entity views (the KG index) with its key tower
        key_dir = key_tower_dir(model.model)
        self.key_body = self.body
        if key_dir is not None:
            _, key_model, _ = load_for_inference(model.model_copy(update={"model": str(key_dir), "gguf_file": None}),
                                                 dtype=torch_dtype)
            key_model.to(self.device).eval()
            self.key_body = key_model.get_encoder() if self.kind == "seq2seq" else getattr(
                key_model, getattr(key_model, "base_model_prefix", ""), key_model)
        self.pooling = default_pooling(self.kind) if pooling == "auto" else pooling
        self.append_eos = self.kind == "causal" and self.pooling == "last"
        self.micro_batch = micro_batch
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = {int(x) for x in eos + [self.tokenizer.eos_token_id] if x is not None}
        self.dim = self.info.hidden_size
        # a model trained against a whitened bank embeds through its whitening
        from kgscale.models.whitening import load_whitening

        self.whitening = load_whitening(model.model)

    # ---- embeddings -------------------------------------------------------

    def embed(self, inputs: list[list[int]], role: str = "query") -> np.ndarray:
        """float32 [len(inputs), D], unit rows, in input order, by the
        evaluation's embedder (length-sorted micro-batches,
        :func:`kgscale.models.embed.embed_ids`); ``role`` ``key``: entity views,
        by a two-tower model's key tower."""
        from kgscale.models.embed import embed_ids

        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        body = self.key_body if role == "key" else self.body
        emb = embed_ids(body, inputs, self.pooling, self.pad_id, max_rows=self.micro_batch, device=self.device)
        return emb if self.whitening is None else self.whitening.apply_numpy(emb)

    # ---- generation -------------------------------------------------------

    def _inputs(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        # a decoder-only model continues from the last position: pad on the left
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for j, p in enumerate(prompts):
            if self.kind == "causal":
                ids[j, width - len(p):] = torch.tensor(p, dtype=torch.long)
                mask[j, width - len(p):] = 1
            else:
                ids[j, :len(p)] = torch.tensor(p, dtype=torch.long)
                mask[j, :len(p)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _generate(self, prompts: list[list[int]], params: GenerationParams, **extra) -> tuple[torch.Tensor, int]:
        if self.kind == "encoder":
            raise ValueError("an encoder model cannot generate text")
        ids, mask = self._inputs(prompts)
        kwargs = {"max_new_tokens": params.max_new_tokens, "pad_token_id": self.pad_id,
                  "eos_token_id": sorted(self.eos_ids)}
        # a temperature this close to 0 would overflow the logits: it means greedy
        if params.temperature >= 1e-3:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs, **extra)
        # generated part: after the (left-padded) prompt, or after the decoder start token
        skip = ids.shape[1] if self.kind == "causal" else 1
        return out[:, skip:], skip

    def generate(self, prompts: list[list[int]], params: GenerationParams,
                 cancel: Callable[[], bool] | None = None) -> list[GenerationOutput]:
        """One completion per prompt, generated together (one padded batch).
        ``cancel()`` true (every caller has gone) ends it at the next step."""
        criteria = []
        if params.stop:
            criteria.append(_StopText(self.tokenizer, params.stop, self._width(prompts)))
        if cancel is not None:
            criteria.append(_Cancelled(cancel))
        extra = {"stopping_criteria": _criteria_list(criteria)} if criteria else {}
        new, _ = self._generate(prompts, params, **extra)
        ends = self.eos_ids | {self.pad_id}
        results = []
        for prompt, row in zip(prompts, new.tolist()):
            finish = "length"
            cut = next((i for i, t in enumerate(row) if t in ends), None)
            if cut is not None:
                row, finish = row[:cut], "stop"
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            at = _first_stop(text, params.stop)
            if at >= 0:
                text, finish = text[:at], "stop"
            results.append(GenerationOutput(text, finish, len(prompt), len(row)))
        return results

    def _width(self, prompts: list[list[int]]) -> int:
        """Where generated ids start in ``generate``'s sequences."""
        return max(len(p) for p in prompts) if self.kind == "causal" else 1

    def stream(self, prompt: list[int], params: GenerationParams, on_text: Callable[[str], None],
               cancel: threading.Event) -> GenerationOutput:
        """Generate for one prompt, calling ``on_text`` with each new piece of
        text; ``cancel`` (set when the client goes away) ends it early."""
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        state = StreamText(self.tokenizer, params.stop, self.eos_ids)

        class Sink(BaseStreamer):
            first = True

            def put(self, value):
                if self.first:  # the prompt (or the decoder's start token), not generated text
                    self.first = False
                    return
                delta = state.add(value.view(-1).tolist())
                if delta:
                    on_text(delta)

            def end(self):
                pass

        class Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set() or state.stopped, dtype=torch.bool,
                                  device=input_ids.device)

        self._generate([prompt], params, streamer=Sink(), stopping_criteria=StoppingCriteriaList([Halt()]))
        tail = state.finish()
        if tail:
            on_text(tail)
        finish = "stop" if state.stopped else "length"
        return GenerationOutput(state.out, finish, len(prompt), len(state.ids))


def _criteria_list(criteria: list):
    from transformers import StoppingCriteriaList

    return StoppingCriteriaList(criteria)


def _stopping_base():
    from transformers import StoppingCriteria

    return StoppingCriteria


class _StopText(_stopping_base()):
    """Ends each sequence once its decoded tail holds a stop sequence.

    Transformers' own ``stop_strings`` precomputes tables over the whole
    vocabulary for each stop string, in time that grows with its length: a
    1,500-character stop made a 1-token completion take 12-20 s on the
    replica's one model thread, and every request behind it waited. Decoding
    the last few tokens of each row per step costs microseconds instead."""

    def __init__(self, tokenizer, stops: tuple[str, ...], start: int) -> None:
        self.tokenizer, self.stops, self.start = tokenizer, stops, start
        # a token is at least one character except byte pieces (up to 4 per character)
        self.tail = 4 * max(len(x) for x in stops) + 4

    def __call__(self, input_ids, scores, **kwargs):
        tails = input_ids[:, max(self.start, input_ids.shape[1] - self.tail):]
        texts = self.tokenizer.batch_decode(tails.tolist(), skip_special_tokens=True)
        return torch.tensor([any(x in t for x in self.stops) for t in texts], dtype=torch.bool, device=input_ids.device)


class _Cancelled(_stopping_base()):
    def __init__(self, cancel: Callable[[], bool]) -> None:
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), bool(self.cancel()), dtype=torch.bool, device=input_ids.device)
