"""A backbone made ready to train: LoRA or full fine-tuning, gradient
checkpointing, precision, extra special tokens.

:func:`load_for_training` is what every training worker (and the benchmark's
plain loop) calls, so a run and its baseline train exactly the same model.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from kgscale.config import StrictModel
from kgscale.models.backbone import (BackboneConfig, Kind, ModelLoadError, ResolvedBackbone, infer_kind, load_tokenizer,
                                     resolve, resolve_backbone)

Precision = Literal["auto", "fp32", "bf16"]


class LoraSettings(StrictModel):
    """LoRA adapters through ``peft``; ``enabled: false`` trains every weight."""

    enabled: bool = True
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    # peft's own default: on a CPU the masks cost a third of a SmolLM2 LoRA step
    # (torch's bernoulli_), and KALE's no-grad rationale view would be noised
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # module names (suffixes) to adapt; None: the objective's default (KaLM:
    # the MLP projections gate_proj, up_proj, down_proj)
    target_modules: list[str] | None = None
    # modules trained in full beside the adapters (e.g. the embeddings when new
    # tokens are added), saved with the adapter
    modules_to_save: list[str] | None = None


class ModelSettings(BackboneConfig):
    """The backbone (see :class:`BackboneConfig`) plus how to train it."""

    lora: LoraSettings = LoraSettings()
    # recompute activations in the backward pass: less memory, ~30% more compute
    gradient_checkpointing: bool = False
    # modules (name prefixes, e.g. embeddings.word_embeddings) kept at their
    # starting weights in full fine-tuning: no gradient, no optimiser state
    frozen_modules: list[str] = []
    # auto: bf16 on GPUs and on CPUs with bf16 matrix units (kgscale.models.precision), else fp32
    precision: Precision = "auto"
    # the attention kernel while training: auto is eager on a CPU when
    # data.max_length is at most 256 tokens and transformers' default (SDPA
    # where the model has it) otherwise (kgscale.models.attention)
    attention: Literal["auto", "eager", "sdpa"] = "auto"
    # the dropout probability of every dropout layer of the backbone while
    # training (attention's included; LoRA's is lora.dropout); None keeps the
    # checkpoint's. On a CPU dropout's random masks are costly: MiniLM's 0.1
    # takes a fifth of a KaLM step here (torch's bernoulli_), and 0 draws none
    dropout: float | None = Field(None, ge=0.0, lt=1.0)


def resolve_precision(precision: Precision, use_gpu: bool) -> Literal["fp32", "bf16"]:
    if precision == "auto":
        from kgscale.models.precision import auto_precision

        return auto_precision("cuda" if use_gpu else "cpu")
    return precision


def prepare_tokenizer(cfg: BackboneConfig, special_tokens: tuple[str, ...] = (),
                      resolved: ResolvedBackbone | None = None):
    """The backbone's tokenizer with ``special_tokens`` added (in that order, so
    every process that calls this gets the same ids); ``resolved``: the
    backbone's record, when the caller has it."""
    tok = load_tokenizer(cfg, resolved)
    new = [t for t in special_tokens if t not in tok.get_vocab()]
    if new:
        tok.add_special_tokens({"additional_special_tokens": list(new)}, replace_extra_special_tokens=False)
    return tok


def lora_targets(model, wanted: list[str]) -> list[str]:
    """The subset of ``wanted`` module-name suffixes the model has; an error
    naming what exists when none matches."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [w for w in wanted if w not in names]
    if len(missing) == len(wanted):
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ModelLoadError(
            f"none of the LoRA target modules {wanted} exist in this model; set model.lora.target_modules "
            f"to some of its linear layers: {', '.join(linear)}"
        )
    return [w for w in wanted if w not in missing]


def check_lora_targets(cfg: ModelSettings, default_targets: list[str] | None,
                       resolved: ResolvedBackbone | None = None) -> list[str] | None:
    """Validate the LoRA targets against the model's architecture without
    loading weights (the model is built on the meta device). Run on the driver
    so a bad target list fails before any worker starts."""
    if not cfg.lora.enabled:
        return None
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    rb = resolved or resolve_backbone(cfg)
    cls = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModel}[rb.kind]
    with torch.device("meta"):
        model = cls.from_config(rb.config)
    return lora_targets(model, cfg.lora.target_modules or default_targets or _all_linear(model))


def _all_linear(model) -> list[str]:
    head = model.get_output_embeddings()
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if type(m).__name__ == "Linear" and m is not head})


def load_for_training(cfg: ModelSettings, *, tokenizer=None, default_targets: list[str] | None = None,
                      kind: Kind | None = None, zero3_config: dict | None = None):
    """The backbone in train mode: weights loaded in fp32 (DeepSpeed or autocast
    handle bf16), embeddings resized to ``tokenizer`` when it has added tokens,
    LoRA applied when enabled, gradient checkpointing when asked.

    ``zero3_config``: the DeepSpeed config of a ZeRO-3 run. The weights are
    then partitioned across the workers as they load (``deepspeed.zero.Init``
    through transformers), so no worker ever holds the whole model."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = resolve(cfg)
    kind = kind or cfg.kind or infer_kind(path)
    cls = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM, "encoder": AutoModel}[kind]
    zero3 = None
    if zero3_config is not None:
        from transformers.integrations import HfDeepSpeedConfig

        zero3 = HfDeepSpeedConfig(zero3_config)  # transformers reads it through a weak reference
    try:
        try:
            attn = {} if cfg.attention == "auto" else {"attn_implementation": cfg.attention}
            model = cls.from_pretrained(str(path), dtype=torch.float32, **attn)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load {cfg.model!r} as a {kind} model: {exc}") from exc
        if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            # new special tokens (KILM's entity markers): rows initialised to the
            # mean embedding, which transformers does by default (gathering
            # the partitioned matrix under ZeRO-3)
            model.resize_token_embeddings(len(tokenizer))
    finally:
        if zero3 is not None:
            # only loading is partitioned this way; a later from_pretrained (the
            # export on rank 0) must load normally
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # no KV cache while training
    if kind == "encoder" and getattr(model, "pooler", None) is not None:
        # views are mean-pooled: BERT's [CLS] pooler gets no gradient, and an
        # optimiser should not carry state for it
        model.pooler.requires_grad_(False)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    if cfg.gradient_checkpointing:
        # non-reentrant checkpointing works with frozen inputs (LoRA) and ZeRO-3
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.frozen_modules:
        names = [n for n, _ in model.named_parameters()]
        for prefix in cfg.frozen_modules:
            hit = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if not hit:
                raise ModelLoadError(f"model.frozen_modules: {prefix!r} names no parameters of this model "
                                     f"(e.g. {', '.join(sorted({n.rsplit('.', 2)[0] for n in names})[:6])})")
        for n, p in model.named_parameters():
            if any(n == x or n.startswith(x + ".") for x in cfg.frozen_modules):
                p.requires_grad_(False)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        targets = lora_targets(model, cfg.lora.target_modules or default_targets or _all_linear(model))
        lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=targets, modules_to_save=cfg.lora.modules_to_save,
                          task_type="SEQ_2_SEQ_LM" if kind == "seq2seq" else "CAUSAL_LM")
        model = get_peft_model(model, lcfg)
    model.train()
    return model


def set_dropout(model, p: float) -> int:
    """Every ``nn.Dropout`` of ``model`` drops with probability ``p`` (transformers'
    attention reads its module's ``p`` too); the number of layers changed.
    The saved config keeps the checkpoint's own values."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in layers:
        m.p = p
    return len(layers)


def unwrap_peft(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def causal_parts(model):
    """``(trunk, head)`` of a causal LM: the decoder stack that returns the
    last hidden states, and the output projection to the vocabulary.

    Objectives call them separately so that representations (KaLM's views) need
    no vocabulary projection and the LM losses project only the positions that
    carry a label (the projection of every position would dominate memory)."""
    base = unwrap_peft(model)
    trunk = getattr(base, base.base_model_prefix, None)
    head = base.get_output_embeddings()
    if trunk is None or head is None:
        raise ModelLoadError(f"{type(base).__name__} is not a causal LM with a separate trunk and output head")
    return trunk, head


def trainable_parameters(model) -> tuple[int, int]:
    # ZeRO-3 partitioned parameters keep their full size in ds_numel
    def n(p):
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(n(p) for p in model.parameters() if p.requires_grad)
    total = sum(n(p) for p in model.parameters())
    return trainable, total
