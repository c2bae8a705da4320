"""The trained model in Hugging Face format.

::

    model/                 what `from_pretrained` reads as it is
      config.json, model.safetensors, generation_config.json
      tokenizer.json, tokenizer_config.json, ...   (with added tokens, KILM)
      adapter/             LoRA runs: the peft adapter alone
        adapter_config.json, adapter_model.safetensors
      objective.json       the objective's learned state (KaLM: temperature)
      key_tower/           two-tower runs (objective.key_tower separate or frozen):
                           the key (entity) tower, a directory like this one

With LoRA the top-level weights are the base with the adapter merged in, so
``AutoModelForCausalLM.from_pretrained(model/)`` gives the trained model with
no peft at inference; ``PeftModel.from_pretrained(base, model/adapter)`` gives
the adapter on its base. The adapter sits in a subdirectory on purpose: an
``adapter_config.json`` beside ``config.json`` would make transformers load the
base again and apply the adapter a second time.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from kgscale.models.backbone import resolve
from kgscale.models.towers import KEY_TOWER
from kgscale.models.training import ModelSettings, load_for_training

ADAPTER = "adapter"
OBJECTIVE = "objective.json"


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A :class:`TrainModule` state dict -> (backbone state, objective state)."""
    model = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    objective = {k[len("objective."):]: v for k, v in state.items() if k.startswith("objective.")}
    return model, objective


def save_hf_model(state: dict[str, torch.Tensor], cfg: ModelSettings, tokenizer, out: Path, *,
                  default_targets: list[str] | None, kind: str, objective_state: dict | None = None,
                  key_tower: str = "shared") -> Path:
    """Rebuild the backbone on CPU in fp32, load ``state`` (a full, gathered
    :class:`TrainModule` state dict), and write ``out`` as described above;
    a two-tower model (``key_tower`` separate or frozen) writes its query
    tower there and its key tower to ``out/key_tower`` (:mod:`kgscale.models.towers`)."""
    out = Path(out)
    model_state, _ = split_state(state)
    if key_tower != "shared":
        query = {k[len("query."):]: v for k, v in model_state.items() if k.startswith("query.")}
        key = {k[len("key."):]: v for k, v in model_state.items() if k.startswith("key.")}
        if key_tower == "frozen":
            _copy_model_files(resolve(cfg), out / KEY_TOWER)
        else:
            _save_one(key, cfg, tokenizer, out / KEY_TOWER, default_targets=default_targets, kind=kind)
        model_state = query
    _save_one(model_state, cfg, tokenizer, out, default_targets=default_targets, kind=kind)
    (out / OBJECTIVE).write_text(json.dumps(objective_state or {}, indent=2) + "\n")
    return out


def _copy_model_files(src, dst: Path) -> None:
    """A frozen key tower is the starting model: its files, byte for byte
    (so its embeddings are the starting model's, and cached ones are reused)."""
    import shutil

    src = Path(src)
    if not src.is_dir():
        raise RuntimeError(f"the frozen key tower's starting model {src} is not a local directory to copy")
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file():
            shutil.copy2(p, dst / p.name)


def _save_one(model_state: dict[str, torch.Tensor], cfg: ModelSettings, tokenizer, out: Path, *,
              default_targets: list[str] | None, kind: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plain = cfg.model_copy(update={"gradient_checkpointing": False})
    model = load_for_training(plain, tokenizer=tokenizer, default_targets=default_targets, kind=kind)
    result = model.load_state_dict({k: v.float() for k, v in model_state.items()}, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if "lm_head" not in k or not _tied(model)]
    if unexpected or missing:
        raise RuntimeError(f"exported weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    if cfg.lora.enabled:
        model.save_pretrained(out / ADAPTER)
        # peft records the path it loaded the base from; make it the resolved
        # local directory (or hub id) so the adapter can find its base
        acfg_path = out / ADAPTER / "adapter_config.json"
        acfg = json.loads(acfg_path.read_text())
        acfg["base_model_name_or_path"] = str(resolve(cfg))
        acfg_path.write_text(json.dumps(acfg, indent=2) + "\n")
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _tied(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base.config, "tie_word_embeddings", False))
