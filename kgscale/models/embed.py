"""Text embeddings in batches: a callable class for Ray Data actor pools.

The representation follows the model family: a causal LM (KaLM) is read at
the last token of the text followed by EOS, the last-layer hidden state there,
L2-normalised; a sentence encoder (MiniLM) and the encoder of an
encoder-decoder by the mean over tokens (sentence-transformers' pooling for
all-MiniLM-L6-v2), L2-normalised. Texts are the views of
:mod:`kgscale.kg.text`, so training, evaluation and serving embed the same
strings.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from kgscale.models.backbone import BackboneConfig
from kgscale.models.pooling import pool

PoolingChoice = Literal["auto", "last", "mean", "cls"]
DTypeChoice = Literal["auto", "float32", "bfloat16", "float16"]


def default_pooling(kind: str) -> str:
    return "last" if kind == "causal" else "mean"


def torch_dtype(choice: str, device: str):
    """The inference dtype: ``auto`` is bf16 on GPUs and on CPUs with bf16
    matrix units (:mod:`kgscale.models.precision`), fp32 elsewhere."""
    if choice == "auto":
        from kgscale.models.precision import auto_precision

        return torch.bfloat16 if auto_precision(device) == "bf16" else torch.float32
    return getattr(torch, choice)


# Padded tokens a forward pass holds. On a CPU the pass is fastest when one
# hidden-state tensor of the batch (tokens x width) is about a million
# elements (2 MiB in bf16), so that a layer's activations stay in cache:
# embedding WN18RR's views with 2 threads, 2,048-4,096 tokens a pass against
# 16,384 ran all-MiniLM-L6-v2 (width 384) 1.4-1.45x faster and 1,024-4,096
# ran SmolLM2-135M (576) about 2.3x faster, while the 64-wide tiny model,
# whose cost is per-pass overhead, was fastest at 8,192-16,384
# (docs/evaluation.md; bench/embed_throughput.py, before and after: MiniLM
# bf16 x1.10, fp32 x1.28). A GPU wants the larger passes.
CPU_PASS_ELEMENTS = 1 << 20
GPU_PASS_TOKENS = 16384


def model_width(config) -> int:
    """The hidden size of a Hugging Face config (``d_model`` for T5/BART)."""
    return int(config.hidden_size if hasattr(config, "hidden_size") else config.d_model)


def pass_tokens(width: int, device: str) -> int:
    """The default padded-token budget of one forward pass (see above)."""
    if torch.device(device).type != "cpu":
        return GPU_PASS_TOKENS
    return max(256, min(GPU_PASS_TOKENS, CPU_PASS_ELEMENTS // max(1, width)))


def length_batches(lengths: np.ndarray, max_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Rows grouped for padding-free-ish batches: sorted by length (longest
    first, so a memory problem shows at once), then cut so that a batch's
    padded size (rows x its longest row) stays within ``max_tokens`` and its
    rows within ``max_rows``. Returns the row indices of each batch."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    n = len(order)
    while start < n:
        longest = max(1, int(lengths[order[start]]))
        size = max(1, min(max_rows, max_tokens // longest))
        batches.append(order[start:start + size])
        start += size
    return batches


def pad_ids(rows: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] ids and mask, T the longest row."""
    width = max((len(x) for x in rows), default=1)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, x in enumerate(rows):
        ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.inference_mode()
def embed_ids(trunk, rows: list, pooling: str, pad_id: int, *, max_tokens: int | None = None, max_rows: int = 512,
              device: str = "cpu", autocast_dtype=None) -> np.ndarray:
    """float32 [len(rows), D] unit rows for token-id lists (each already a
    whole view, :func:`kgscale.models.tokenize.view_ids`), in input order.
    Batches are formed by length (:func:`length_batches`), so a batch pads
    only to its own longest row, of at most ``max_tokens`` padded tokens
    (None: :func:`pass_tokens` for the model's width). ``autocast_dtype``: compute under autocast
    (a model kept in fp32 for training); None runs in the weights' dtype.
    ``last`` pooling of a Llama-layout trunk runs the last layer at the last
    token only (:mod:`kgscale.models.last_token`, the same states)."""
    from kgscale.models.last_token import LastTokenForward

    lengths = np.fromiter((len(x) for x in rows), dtype=np.int64, count=len(rows))
    if max_tokens is None:
        max_tokens = pass_tokens(model_width(trunk.config), device)
    # a causal LM read at its last token runs its last layer there only
    last = LastTokenForward.of(trunk) if pooling == "last" else None
    out = None
    for sel in length_batches(lengths, max_tokens, max_rows):
        ids, mask = pad_ids([rows[i] for i in sel], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        ctx = torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype is not None else _null()
        with ctx:
            if last is not None and last.covers(ids.shape[1]):
                emb = torch.nn.functional.normalize(last(ids, mask).float(), dim=-1).cpu().numpy()
            else:
                hidden = trunk(input_ids=ids, attention_mask=mask).last_hidden_state
                emb = pool(hidden.float(), mask, pooling).cpu().numpy()
        if out is None:
            out = np.empty((len(rows), emb.shape[1]), dtype=np.float32)
        out[sel] = emb
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def tokenize_views(tokenizer, texts: list[str], max_length: int, append_eos: bool) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask of :func:`kgscale.models.tokenize.view_ids`."""
    from kgscale.models.tokenize import view_ids

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = pad_ids(view_ids(tokenizer, texts, max_length, append_eos), pad)
    return {"input_ids": ids, "attention_mask": mask}


Role = Literal["query", "key"]


class _Tower:
    """One loaded model an :class:`Embedder` embeds with."""

    def __init__(self, cfg: BackboneConfig, dtype, device: str, pooling: PoolingChoice, max_length: int | None) -> None:
        from kgscale.models.attention import embedding_attention
        from kgscale.models.inference import load_for_inference

        self.tokenizer, full, self.kind = load_for_inference(cfg, dtype=dtype)
        # the hidden states only: a causal LM's vocabulary projection over every
        # position would cost more than the rest of the forward pass
        if self.kind == "seq2seq":
            self.model = full.get_encoder()
        else:
            self.model = getattr(full, getattr(full, "base_model_prefix", ""), full)
        self.model.to(device).eval()
        attention = embedding_attention(device, max_length, model_width(self.model.config))
        if attention is not None:
            self.model.set_attn_implementation(attention)
        self.pooling = default_pooling(self.kind) if pooling == "auto" else pooling
        self.append_eos = self.kind == "causal" and self.pooling == "last"
        tok = self.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


class Embedder:
    """``batch["text"]`` -> ``batch["embedding"]`` (float32 [B, D], unit rows);
    other columns pass through. Loaded once per actor.

    ``role``: ``query`` embeds with the query tower (the model itself),
    ``key`` (entity views) with a two-tower model's key tower when the model
    directory has one (:mod:`kgscale.models.towers`). Given several roles,
    the Embedder serves each (a batch's ``role`` column says which row takes
    which), loading each distinct model once: one actor pool embeds the
    entity and the query views of an evaluation, not two. Texts are tokenised
    in one batched call and embedded in length-sorted micro-batches of at
    most ``micro_batch`` rows and ``micro_batch_tokens`` padded tokens (None:
    by the model's width and the device, :func:`pass_tokens`). On a CPU a
    model at most 384 wide embeds views of at most 256 tokens with eager
    attention (:mod:`kgscale.models.attention`: faster there, same vectors)."""

    def __init__(self, model: dict, pooling: PoolingChoice = "auto", max_length: int = 64,
                 dtype: DTypeChoice = "auto", num_threads: int | None = None, device: str | None = None,
                 micro_batch: int = 512, micro_batch_tokens: int | None = None,
                 role: Role | tuple[Role, ...] | list[Role] = "query") -> None:
        from kgscale.models.towers import key_tower_dir

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg = BackboneConfig(**model) if isinstance(model, dict) else model
        self.roles: tuple[str, ...] = (role,) if isinstance(role, str) else tuple(role)
        if not self.roles or set(self.roles) - {"query", "key"}:
            raise ValueError(f"Embedder roles are query and key, not {role!r}")
        self.dtype = torch_dtype(dtype, self.device)
        key_dir = key_tower_dir(cfg.model) if "key" in self.roles else None
        sources = {r: cfg.model_copy(update={"model": str(key_dir), "gguf_file": None})
                   if r == "key" and key_dir is not None else cfg for r in self.roles}
        loaded: dict[str, _Tower] = {}
        self.towers: dict[str, _Tower] = {}
        for r, src in sources.items():
            ident = src.model_dump_json()
            if ident not in loaded:
                loaded[ident] = _Tower(src, self.dtype, self.device, pooling, max_length)
            self.towers[r] = loaded[ident]
        first = self.towers[self.roles[0]]
        self.tokenizer, self.model, self.kind = first.tokenizer, first.model, first.kind
        self.pooling, self.append_eos, self.pad_id = first.pooling, first.append_eos, first.pad_id
        self.max_length = max_length
        self.micro_batch, self.micro_batch_tokens = micro_batch, micro_batch_tokens

    def embed(self, texts: list[str], role: Role | None = None) -> np.ndarray:
        from kgscale.models.tokenize import view_ids

        tower = self.towers[role or self.roles[0]]
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = view_ids(tower.tokenizer, list(texts), self.max_length, tower.append_eos)
        return embed_ids(tower.model, rows, tower.pooling, tower.pad_id, max_tokens=self.micro_batch_tokens,
                         max_rows=self.micro_batch, device=self.device)

    @property
    def dim(self) -> int:
        return model_width(self.model.config)

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        out = {k: v for k, v in batch.items() if k not in ("text", "role")}
        if "role" not in batch:
            out["embedding"] = self.embed(texts)
            return out
        roles = np.asarray(batch["role"]).astype(str)
        emb = np.empty((len(texts), self.dim), dtype=np.float32)
        for r in np.unique(roles):
            sel = np.flatnonzero(roles == r)
            emb[sel] = self.embed([texts[i] for i in sel], role=str(r))
        out["embedding"] = emb
        return out
