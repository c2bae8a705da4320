"""What a served model is: tokenizer, weights (a LoRA adapter merged), kind
and context length.

``model`` may be anything :mod:`kgscale.models.backbone` loads, or a trained
directory holding a PEFT adapter (``adapter_config.json``): the adapter is
applied to its base (the directory itself when it also holds ``config.json``,
else the adapter's ``base_model_name_or_path``) and merged, so serving runs
at the plain model's speed. The tokenizer is the directory's own when it has
one (training may add tokens), else the base's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kgscale.models.backbone import BackboneConfig, ModelLoadError, infer_kind, load_model, load_tokenizer, resolve

ADAPTER_CONFIG = "adapter_config.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def adapter_dir(cfg: BackboneConfig) -> Path | None:
    p = Path(cfg.model).expanduser()
    return p if p.is_dir() and (p / ADAPTER_CONFIG).is_file() else None


def base_of(cfg: BackboneConfig) -> BackboneConfig:
    """The backbone an adapter sits on (``cfg`` itself when it has none)."""
    adapter = adapter_dir(cfg)
    if adapter is None or (adapter / "config.json").is_file():
        return cfg
    try:
        base = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path ({exc})") from None
    if not base:
        raise ModelLoadError(f"{adapter / ADAPTER_CONFIG}: base_model_name_or_path is empty")
    return cfg.model_copy(update={"model": str(base), "gguf_file": None})


def tokenizer_for(cfg: BackboneConfig):
    adapter = adapter_dir(cfg)
    if adapter is not None and any((adapter / f).is_file() for f in _TOKENIZER_FILES):
        return load_tokenizer(BackboneConfig(model=str(adapter)))
    return load_tokenizer(base_of(cfg))


@dataclass(frozen=True)
class ModelInfo:
    kind: str  # causal | seq2seq | encoder
    context_length: int  # positions the model can attend to
    hidden_size: int


def describe(cfg: BackboneConfig) -> ModelInfo:
    """Kind and sizes from the config alone (no weights): the ingress needs
    them to validate requests."""
    from transformers import AutoConfig

    base = base_of(cfg)
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


def load_for_serving(cfg: BackboneConfig, *, dtype=None):
    """(tokenizer, model in eval mode), with an adapter merged when present."""
    adapter = adapter_dir(cfg)
    model = load_model(base_of(cfg), dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot apply the adapter in {adapter}: {exc}") from exc
        model.eval()
    return tokenizer_for(cfg), model
