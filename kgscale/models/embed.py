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
    if choice == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, choice)


def tokenize_views(tokenizer, texts: list[str], max_length: int, append_eos: bool) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask; with ``append_eos`` every text is cut to
    ``max_length - 1`` tokens and ends with EOS (KaLM reads the EOS state)."""
    if not append_eos:
        return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    ids = tokenizer(texts, truncation=True, max_length=max_length - 1, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    ids = [x if x and x[-1] == eos else x + [eos] for x in ids]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class Embedder:
    """``batch["text"]`` -> ``batch["embedding"]`` (float32 [B, D], unit rows);
    other columns pass through. Loaded once per actor."""

    def __init__(self, model: dict, pooling: PoolingChoice = "auto", max_length: int = 64,
                 dtype: DTypeChoice = "auto", num_threads: int | None = None, device: str | None = None,
                 micro_batch: int = 64) -> None:
        from kgscale.models.inference import load_for_inference

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg = BackboneConfig(**model) if isinstance(model, dict) else model
        self.tokenizer, full, self.kind = load_for_inference(cfg, dtype=torch_dtype(dtype, self.device))
        # the hidden states only: a causal LM's vocabulary projection over every
        # position would cost more than the rest of the forward pass
        if self.kind == "seq2seq":
            self.model = full.get_encoder()
        else:
            self.model = getattr(full, getattr(full, "base_model_prefix", ""), full)
        self.model.to(self.device).eval()
        self.pooling = default_pooling(self.kind) if pooling == "auto" else pooling
        self.append_eos = self.kind == "causal" and self.pooling == "last"
        self.max_length = max_length
        self.micro_batch = micro_batch

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.micro_batch):
            enc = tokenize_views(self.tokenizer, texts[i:i + self.micro_batch], self.max_length, self.append_eos)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            out.append(pool(hidden.float(), enc["attention_mask"], self.pooling).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model)

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch["text"]]
        out = {k: v for k, v in batch.items() if k != "text"}
        out["embedding"] = self.embed(texts)
        return out
