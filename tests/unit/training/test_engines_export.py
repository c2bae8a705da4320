from __future__ import annotations

import json
import math

import pytest
import torch

from kgscale.models.training import ModelSettings, load_for_training, prepare_tokenizer
from kgscale.objectives import TrainModule
from kgscale.objectives.kalm import KALM_LORA_TARGETS, KaLM
from kgscale.train.config import TrainSettings
from kgscale.train.engines import deepspeed_config, lr_factor, make_optimizer, param_groups
from kgscale.train.export import save_hf_model


def test_warmup_then_cosine():
    f = [lr_factor(s, warmup=2, total=10, min_ratio=0.1) for s in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.0)  # cosine starts at its top
    assert f[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[1:], f[2:]))
    assert lr_factor(0, 0, 5, 0.0) == pytest.approx(1.0)


def test_weight_decay_only_on_matrices():
    model = TrainModule(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3)), KaLM())
    decay, no_decay = param_groups(model, 0.01)
    assert [p.ndim for p in decay["params"]] == [2] and decay["weight_decay"] == 0.01
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0  # bias, norm w+b, temperature


def test_the_optimizer_is_fused_adamw_with_the_plain_update():
    """make_optimizer takes torch's fused AdamW on a CPU; its steps are AdamW's
    (the per-tensor loop's) to float rounding, weight decay on matrices only."""
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    start = nets[0][0].weight.detach().clone()
    cfg = TrainSettings(lr=1e-2, weight_decay=0.1, warmup_steps=0, max_steps=10)
    fused, _ = make_optimizer(nets[0], cfg)
    assert fused.defaults["fused"] is True
    plain = torch.optim.AdamW(param_groups(nets[1], 0.1), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for step in range(5):
        x = torch.randn(4, 8)
        for net, opt in zip(nets, (fused, plain)):
            net(x).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (nets[0][0].weight - start).abs().max() > 1e-3  # the steps moved the weights


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config(stage):
    cfg = TrainSettings(zero_stage=stage, micro_batch_size=4, grad_accum_steps=3, grad_clip=0.5, use_gpu=True)
    ds = deepspeed_config(cfg, "bf16")
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 3
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"]["enabled"] is True
    assert deepspeed_config(cfg, "fp32")["bf16"]["enabled"] is False
    # on a CPU, bf16 is autocast around the forward pass, not DeepSpeed's bf16 mode
    cpu = cfg.model_copy(update={"use_gpu": False})
    assert deepspeed_config(cpu, "bf16")["bf16"]["enabled"] is False


def test_lora_on_kalm_default_targets_and_gradient_checkpointing():
    cfg = ModelSettings(model="tiny-llama", gradient_checkpointing=True)
    model = load_for_training(cfg, default_targets=KALM_LORA_TARGETS)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} == set(KALM_LORA_TARGETS)
    assert model.get_base_model().is_activation_checkpointing
    full = load_for_training(cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"enabled": False})}))
    assert all(p.requires_grad for p in full.parameters())


def test_exported_lora_model_loads_with_transformers_and_peft(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = ModelSettings(model="tiny-llama")
    tok = prepare_tokenizer(cfg)
    torch.manual_seed(0)
    model = load_for_training(cfg, default_targets=KALM_LORA_TARGETS)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.2)  # a trained-looking adapter
    module = TrainModule(model, KaLM(temperature=0.07))
    out = save_hf_model(module.state_dict(), cfg, tok, tmp_path / "m", default_targets=KALM_LORA_TARGETS, kind="causal",
                        objective_state=module.objective.summarize_state(module.objective.state_dict()))
    ids = torch.tensor([tok("a dog barks").input_ids])
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out).eval()
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)
        base = AutoModelForCausalLM.from_pretrained(json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"])
        adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
        assert torch.allclose(adapted(input_ids=ids).logits, want, atol=1e-4)
    assert AutoTokenizer.from_pretrained(out)("a dog barks").input_ids == ids[0].tolist()
    assert json.loads((out / "objective.json").read_text())["temperature"] == pytest.approx(0.07, rel=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    from tests.unit.objectives.test_kalm import kalm_batch

    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        # no LoRA dropout, train mode (checkpointing only runs in training):
        # the two passes must compute the same function
        cfg = ModelSettings(model="tiny-llama", gradient_checkpointing=ckpt, lora={"dropout": 0.0})
        model = load_for_training(cfg, default_targets=KALM_LORA_TARGETS)
        assert model.training and model.get_base_model().is_activation_checkpointing == ckpt
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(1))
        obj = KaLM(lm_weight=1.0)
        obj(model, kalm_batch()).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), n


def test_live_tensor_memory_counts_each_storage_once():
    from kgscale.train.metrics import live_tensor_mb

    before = live_tensor_mb()
    big = torch.zeros(2**20, dtype=torch.float32)  # 4 MiB
    views = [big[1:], big.view(1024, 1024)]  # noqa: F841 - share the storage
    assert 3.9 < live_tensor_mb() - before < 4.1

def test_attention_kernel_setting_changes_the_kernel_not_the_function():
    from tests.unit.objectives.test_kalm import kalm_batch

    losses = {}
    for attention in ("eager", "sdpa"):
        cfg = ModelSettings(model="tiny-llama", attention=attention, lora={"enabled": False})
        model = load_for_training(cfg)
        assert model.config._attn_implementation == attention
        losses[attention] = KaLM(lm_weight=1.0)(model.eval(), kalm_batch()).loss.item()
    assert math.isclose(losses["eager"], losses["sdpa"], rel_tol=1e-4)
    with pytest.raises(ValueError):
        ModelSettings(model="tiny-llama", attention="flash")


def test_auto_attention_is_eager_on_a_cpu_for_short_sequences_only():
    from kgscale.models.attention import EAGER_ON_CPU_UP_TO, training_attention

    assert training_attention("auto", use_gpu=False, max_length=64) == "eager"
    assert training_attention("auto", use_gpu=False, max_length=EAGER_ON_CPU_UP_TO) == "eager"
    # longer sequences and GPUs keep transformers' default (SDPA)
    assert training_attention("auto", use_gpu=False, max_length=EAGER_ON_CPU_UP_TO + 1) == "auto"
    assert training_attention("auto", use_gpu=True, max_length=64) == "auto"
    # a setting other than auto is kept as it is
    assert training_attention("sdpa", use_gpu=False, max_length=64) == "sdpa"
    assert training_attention("eager", use_gpu=True, max_length=4096) == "eager"
    model = load_for_training(ModelSettings(model="tiny-llama", lora={"enabled": False},
                                            attention=training_attention("auto", False, 64)))
    assert model.config._attn_implementation == "eager"
