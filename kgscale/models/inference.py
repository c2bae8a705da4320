"""Loading a model for inference: any backbone, or a trained directory with a
PEFT adapter.

A training run with LoRA writes a Hugging Face directory holding
``adapter_config.json`` and the adapter weights, and sometimes the tokenizer
(and sometimes a full copy of the base). The adapter is applied to its base
(the directory itself when it holds a ``config.json``, else the adapter's
``base_model_name_or_path``, which may be any name :mod:`kgscale.models.backbone`
resolves) and merged, so inference runs at the plain model's speed.
"""
from __future__ import annotations

import json
from pathlib import Path

from kgscale.models.backbone import BackboneConfig, ModelLoadError, infer_kind, load_model, load_tokenizer, resolve

ADAPTER_CONFIG = "adapter_config.json"


def adapter_dir(cfg: BackboneConfig) -> Path | None:
    p = Path(cfg.model).expanduser()
    return p if p.is_dir() and (p / ADAPTER_CONFIG).is_file() else None


def base_config(cfg: BackboneConfig) -> BackboneConfig:
    """The backbone an adapter directory sits on (``cfg`` itself without one)."""
    adapter = adapter_dir(cfg)
    if adapter is None:
        return cfg
    if (adapter / "config.json").is_file():
        return cfg.model_copy(update={"gguf_file": None})
    try:
        base = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{adapter / ADAPTER_CONFIG}: no base_model_name_or_path ({exc})") from None
    if not base:
        raise ModelLoadError(f"{adapter / ADAPTER_CONFIG}: base_model_name_or_path is empty")
    return cfg.model_copy(update={"model": str(base), "gguf_file": None})


def check_loadable(cfg: BackboneConfig) -> str:
    """Fail early, on the driver, with a message naming the model; return its kind."""
    base = base_config(cfg)
    path = resolve(base)
    if isinstance(path, str):  # a hub id: only a pre-filled cache works offline
        try:
            from transformers import AutoConfig

            AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"model {cfg.model!r} is neither a local directory nor a packaged model, and the hub id "
                f"cannot be loaded: {exc}") from None
    return base.kind or infer_kind(path)


def load_for_inference(cfg: BackboneConfig, *, dtype=None):
    """(tokenizer, model in eval mode, kind), with an adapter merged when present."""
    adapter = adapter_dir(cfg)
    base = base_config(cfg)
    model = load_model(base, dtype=dtype)
    kind = base.kind or infer_kind(resolve(base))
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot apply the adapter in {adapter}: {exc}") from exc
        model.eval()
    has_tokenizer = adapter is not None and any((adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = _adapter_tokenizer(adapter) if has_tokenizer else load_tokenizer(base)
    return tokenizer, model, kind


def load_inference_tokenizer(cfg: BackboneConfig):
    """The tokenizer :func:`load_for_inference` would return, without the model."""
    adapter = adapter_dir(cfg)
    if adapter is not None and any((adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return _adapter_tokenizer(adapter)
    return load_tokenizer(base_config(cfg))


def _adapter_tokenizer(adapter: Path):
    """The tokenizer saved beside an adapter (training may have added tokens)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(adapter))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {adapter}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    return tok
