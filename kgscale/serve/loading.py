"""What the ingress needs to know about a served model before any weights
load: its kind and context length (to validate requests) and hidden size.

Loading itself (a LoRA adapter applied to its base and merged, the
directory's own tokenizer when training added tokens) is shared with
evaluation: :mod:`kgscale.models.inference`.
"""
from __future__ import annotations

from dataclasses import dataclass

from kgscale.models.backbone import BackboneConfig, ModelLoadError, infer_kind, resolve
from kgscale.models.inference import base_config


@dataclass(frozen=True)
class ModelInfo:
    kind: str  # causal | seq2seq | encoder
    context_length: int  # positions the model can attend to
    hidden_size: int


def describe(cfg: BackboneConfig) -> ModelInfo:
    """Kind and sizes from the config alone (no weights)."""
    from transformers import AutoConfig

    base = base_config(cfg)
    path = resolve(base)
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the config of {cfg.model!r}: {exc}") from exc
    kind = base.kind or infer_kind(path)
    ctx = next((getattr(config, a) for a in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
                if isinstance(getattr(config, a, None), int)), 2048)
    hidden = next((getattr(config, a) for a in ("hidden_size", "d_model", "n_embd")
                   if isinstance(getattr(config, a, None), int)), 0)
    return ModelInfo(kind=kind, context_length=int(ctx), hidden_size=int(hidden))
