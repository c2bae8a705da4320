"""A causal LM read at its last token runs its last layer at that token only.

KaLM embeds a text by the final hidden state at its last (EOS) token. Every
layer but the last must run at every position, since later layers attend to
all of them, but the last layer's output is read at one position per text:
its attention query, its attention weights, its output projection, its MLP
and the final norm are needed there only. Only the last layer's keys and
values are computed for every position. The saving is about the last
layer's share of the model: for the 2-layer tiny model, nearly half of its
compute; for SmolLM2-135M (30 layers), about 3%.

The result is the same function as the full forward (with right padding the
last real token never attends to padding). The test is
tests/unit/test_last_token.py: cosine >= 0.9999 to the full forward's last
token state in fp32, and the same in bf16 to within bf16's rounding.

This covers the decoder layers of Llama, Mistral and Qwen2 as Hugging Face
writes them (SmolLM2 is a Llama), which share one layer layout. Another
model, a window shorter than a batch, or weights partitioned by DeepSpeed
ZeRO-3 take the full forward.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from kgscale.models.pooling import last_positions

# the model types whose decoder layer is pre-norm attention + pre-norm MLP
# with q/k/v/o projections and rotary positions, as Llama's
LLAMA_LAYOUT = ("llama", "mistral", "qwen2")


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LastTokenForward:
    """``(ids [B, T], mask [B, T]) -> [B, D]``: a padded batch's final
    hidden states (after the final norm) at each row's last real token.
    :meth:`of` returns None for a model it does not cover."""

    def __init__(self, trunk) -> None:
        self.trunk = trunk
        self.last = trunk.layers[-1]
        # the trunk without its last layer and final norm: a shallow copy
        # sharing every parameter, so the model itself is never modified
        body = copy.copy(trunk)
        body._modules = dict(trunk._modules)
        body._modules["layers"] = torch.nn.ModuleList(list(trunk.layers)[:-1])
        body._modules["norm"] = torch.nn.Identity()
        self.body = body

    @classmethod
    def of(cls, trunk) -> "LastTokenForward | None":
        config = getattr(trunk, "config", None)
        if getattr(config, "model_type", None) not in LLAMA_LAYOUT or getattr(config, "use_sliding_window", False):
            return None
        layers = getattr(trunk, "layers", None)
        if not isinstance(layers, torch.nn.ModuleList) or len(layers) < 1 or \
                not all(hasattr(trunk, a) for a in ("norm", "rotary_emb", "embed_tokens")):
            return None
        attn = getattr(layers[-1], "self_attn", None)
        if not all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")):
            return None
        if any(hasattr(p, "ds_id") for p in layers[-1].parameters()):
            # DeepSpeed ZeRO-3 partitions the weights and gathers them by hooks
            # in the order of the modules' forward passes: a training run's
            # key-bank refresh under ZeRO-3 keeps the model's own forward
            return None
        return cls(trunk)

    def covers(self, width: int) -> bool:
        """Whether a batch ``width`` tokens wide is exact here (a sliding
        window shorter than the batch is not)."""
        window = getattr(self.trunk.config, "sliding_window", None)
        return window is None or width <= int(window)

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # [B, T, D]
        b, t, _ = x.shape
        rows = torch.arange(b, device=x.device)
        last = last_positions(mask)  # each row's last real token
        layer, attn = self.last, self.last.self_attn
        hd = attn.head_dim

        h = layer.input_layernorm(x)
        h_last = h[rows, last]  # [B, D]
        q = attn.q_proj(h_last).view(b, -1, hd)  # [B, H, hd]
        k = attn.k_proj(h).view(b, t, -1, hd).transpose(1, 2)  # [B, KV, T, hd]
        v = attn.v_proj(h).view(b, t, -1, hd).transpose(1, 2)
        cos, sin = self.trunk.rotary_emb(x, torch.arange(t, device=x.device).unsqueeze(0))  # [1, T, hd]
        k = k * cos.unsqueeze(1) + _rotate_half(k) * sin.unsqueeze(1)
        cq, sq = cos[0, last].unsqueeze(1), sin[0, last].unsqueeze(1)  # [B, 1, hd]
        q = q * cq + _rotate_half(q) * sq
        kv = k.shape[1]
        # grouped queries: head h reads key/value head h // (H / KV), as
        # Hugging Face's repeat_kv lays them out
        q = q.view(b, kv, -1, hd)  # [B, KV, G, hd]
        scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling  # [B, KV, G, T]
        keep = mask.bool()  # [B, T]: the real tokens, all at or before the last one
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, v).reshape(b, -1)  # [B, H * hd]
        y = x[rows, last] + attn.o_proj(out)
        y = y + layer.mlp(layer.post_attention_layernorm(y))
        return self.trunk.norm(y)
