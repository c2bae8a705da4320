"""Training end to end on the session's local Ray: 2 CPU workers, tiny models,
a few steps each. Every run goes through the real driver (`kgscale train`
or `run_train`), TorchTrainer, DeepSpeed / DDP, checkpoints and export."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from kgscale.cli import main
from kgscale.config import build
from kgscale.train.config import TrainConfig
from kgscale.train.run import run_train
from tests.training_fixtures import wn18rr_slice

pytestmark = pytest.mark.ray


def metrics(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def config(tmp_path, **sections) -> dict:
    data = {"model": {"model": "tiny-llama"}, "ray": {"progress_bars": False},
            "train": {"out": str(tmp_path / "out"), "num_workers": 2, "micro_batch_size": 4, "max_steps": 3,
                      "checkpoint_every": 2, "lr": 1e-3, "warmup_steps": 2}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return data


def test_kalm_cli_zero2_lora_worker_killed_recovers_then_resume(tmp_path, shared_datasets, capsys):
    """KaLM through `kgscale train`: DeepSpeed ZeRO-2, LoRA, negatives gathered
    from both workers; rank 1 is SIGKILLed after step 3 and the run recovers
    from the step-2 checkpoint and ends at step 4; the output loads with
    transformers and peft; --resume then continues the same run."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    snap = wn18rr_slice(shared_datasets, tmp_path / "wn18rr", n=300)
    cfg = config(tmp_path, objective={"name": "kalm", "gather_negatives": True},
                 data={"snapshot": str(snap), "max_samples": 64, "max_length": 48},
                 train={"strategy": "deepspeed", "zero_stage": 2, "max_steps": 4, "max_failures": 1,
                        "fault_injection": {"rank": 1, "step": 3}})
    path = tmp_path / "kalm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    out = tmp_path / "out"
    printed = capsys.readouterr().out
    assert "Trained kalm on tiny-llama (LoRA) for 4 steps with 2 workers (deepspeed-zero2)" in printed
    assert "resumed from step(s) 2 after 1 worker failure(s)" in printed
    assert (tmp_path / "out.ray" / ".fault_injected").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == 4 and manifest["samples"]["used"] == 64 and manifest["failures_recovered"] == 1
    rows = metrics(out)
    assert [r.get("step") for r in rows] == [1, 2, 2, 3, 4] and rows[2]["event"] == "resumed"
    steps = [r for r in rows if "loss" in r]
    for r in steps:
        assert {"loss", "contrastive", "lm", "temperature", "lr", "tokens_per_s", "samples_per_s"} <= set(r)
        # 2 workers x micro-batch 4, gathered from both: 8 keys and 8 heads (self-negatives)
        assert r["candidates"] == 16
    assert steps[0]["lr"] < steps[1]["lr"] > steps[3]["lr"]  # warmup, then cosine down
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("dog ; hypernym").input_ids])
    base = AutoModelForCausalLM.from_pretrained(json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"])
    adapted = PeftModel.from_pretrained(base, out / "adapter")
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4)
    assert 0.01 < json.loads((out / "objective.json").read_text())["temperature"] < 1

    # --resume continues the same run from its latest checkpoint (step 4)
    assert main(["train", str(path), "--resume", "train.max_steps=5"]) == 0
    rows = metrics(out)
    assert [r.get("step") for r in rows] == [1, 2, 2, 3, 4, 4, 5] and rows[5]["event"] == "resumed"
    assert json.loads((out / "manifest.json").read_text())["resumed_from_steps"] == [4]
    # without --resume the earlier run is not silently overwritten
    assert main(["train", str(path)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_kilm_zero3_on_bart_with_entity_tokens(tmp_path, shared_datasets, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    snap = wn18rr_slice(shared_datasets, tmp_path / "wn18rr", n=300)
    cfg = build(TrainConfig, config(tmp_path, objective={"name": "kilm"}, model={"model": "tiny-bart", "lora": {"enabled": False}},
                                    data={"snapshot": str(snap), "max_samples": 32, "max_length": 96},
                                    train={"strategy": "deepspeed", "zero_stage": 3, "max_steps": 2}))
    manifest = run_train(cfg)
    out = tmp_path / "out"
    assert manifest["steps"] == 2 and manifest["strategy"] == "deepspeed-zero3"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)  # ZeRO-3 shards gathered into one model
    assert all(t in tok.get_vocab() for t in ("<ent>", "</ent>", "<ent_desc>", "</ent_desc>", "<sep>"))
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert "description" in metrics(out)[-1]

    # training on from that output, named relative to the driver's working
    # directory (as `kgscale run` names "@NAME"): Ray Train workers run in
    # their own directory, so the driver must hand them an absolute path
    monkeypatch.chdir(tmp_path)
    again = build(TrainConfig, config(tmp_path, objective={"name": "kilm"}, model={"model": "out", "lora": {"enabled": False}},
                                      data={"snapshot": str(snap), "max_samples": 32, "max_length": 96},
                                      train={"out": "again", "strategy": "ddp", "max_steps": 1}))
    assert run_train(again)["steps"] == 1
    assert (tmp_path / "again" / "config.json").is_file()


def test_encoder_query_tower_against_a_frozen_bank_then_evaluated(tmp_path, shared_datasets):
    """KaLM's explicit alignment on an encoder: a query tower trained against
    a frozen key tower's bank of every entity. The export is two towers, the
    key tower the starting model byte for byte; evaluation embeds entities
    with the key tower (served by the embedding cache the bank filled) and
    queries with the trained query tower."""
    from kgscale.eval.embedding import EmbedConfig
    from kgscale.eval.kgc import KGCConfig, RankConfig, run_kgc
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.backbone import BackboneConfig, resolve
    from kgscale.models.embed_cache import cache_dir

    snap = wn18rr_slice(shared_datasets, tmp_path / "wn18rr", n=300, test=20)
    cfg = build(TrainConfig, config(
        tmp_path, objective={"name": "kalm_contrastive", "key_tower": "frozen", "entity_bank": True,
                             "both_directions": False},
        model={"model": "tiny-bert", "lora": {"enabled": False}, "frozen_modules": ["embeddings"]},
        data={"snapshot": str(snap), "max_samples": 64, "max_length": 32, "max_entity_length": 24},
        train={"strategy": "ddp", "max_steps": 3, "lr": 1e-3}))
    manifest = run_train(cfg)
    out = tmp_path / "out"
    assert manifest["steps"] == 3
    start = resolve(BackboneConfig(model="tiny-bert"))
    assert (out / "key_tower" / "model.safetensors").read_bytes() == (start / "model.safetensors").read_bytes()
    assert (out / "model.safetensors").read_bytes() != (start / "model.safetensors").read_bytes()
    rows = [r for r in metrics(out) if "loss" in r]
    entities = Snapshot(snap).num_entities
    assert all(r["candidates"] == entities for r in rows)  # every entity, every step
    cached = set(cache_dir().glob("*.npy"))
    assert cached  # the bank

    result = run_kgc(KGCConfig(snapshot=snap, out=tmp_path / "kgc", model=str(out),
                               embed=EmbedConfig(max_length=32, max_entity_tokens=24), rank=RankConfig()))
    m = result["metrics"]
    assert m["towers"] == "query and key" and m["queries"] == 40
    # the entity views were the bank's, by the same weights: one new entry (the queries)
    assert len(set(cache_dir().glob("*.npy")) - cached) == 1


def test_causal_query_tower_against_a_whitened_frozen_bank_then_evaluated(tmp_path, shared_datasets):
    """``whiten_bank`` on a causal LM: the whitening fitted from the bank is
    exported beside the query tower, and evaluation puts both the entity
    views (still served raw by the cache the bank filled) and the queries
    through it, so its key embeddings are exactly the whitened bank."""
    import numpy as np

    from kgscale.eval.embedding import EmbedConfig, embed_parts
    from kgscale.eval.kgc import KGCConfig, run_kgc
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.backbone import BackboneConfig
    from kgscale.models.embed_cache import cache_dir
    from kgscale.models.tokenize import truncate_texts
    from kgscale.models.whitening import WHITENING_FILE, Whitening, load_whitening
    from transformers import AutoTokenizer

    snap = wn18rr_slice(shared_datasets, tmp_path / "wn18rr", n=300, test=20)
    cfg = build(TrainConfig, config(
        tmp_path, objective={"name": "kalm_contrastive", "key_tower": "frozen", "entity_bank": True,
                             "both_directions": False, "whiten_bank": True},
        model={"model": "tiny-llama", "lora": {"enabled": True, "r": 4}},
        data={"snapshot": str(snap), "max_samples": 64, "max_length": 32, "max_entity_length": 24},
        train={"strategy": "ddp", "max_steps": 3, "lr": 1e-3}))
    assert run_train(cfg)["steps"] == 3
    out = tmp_path / "out"
    assert (out / WHITENING_FILE).is_file()
    whitening = load_whitening(out)
    cached = set(cache_dir().glob("*.npy"))

    # the bank as training built it: the starting model's key views, raw
    tok = AutoTokenizer.from_pretrained(out)
    texts = Snapshot(snap).entity_texts
    rows = [i for i, t in enumerate(texts) if t]
    views = truncate_texts(tok, [texts[i] for i in rows], 24)
    from kgscale.models.training import resolve_precision

    # the settings the bank embeds with (kgscale.train.bank)
    embed = EmbedConfig(max_length=32, max_entity_tokens=None,
                        dtype="bfloat16" if resolve_precision("auto", False) == "bf16" else "float32")
    (raw,) = embed_parts([(views, "key")], BackboneConfig(model="tiny-llama"), embed)
    (keys,) = embed_parts([(views, "key")], BackboneConfig(model=str(out)), embed)
    assert set(cache_dir().glob("*.npy")) == cached  # both from the bank's cache entry
    refit = Whitening.fit(__import__("torch").from_numpy(raw))
    assert np.allclose(whitening.matrix.numpy(), refit.matrix.numpy(), atol=1e-4)
    assert np.allclose(keys, whitening.apply_numpy(raw), atol=1e-6)
    assert not np.allclose(keys, raw, atol=1e-2)

    m = run_kgc(KGCConfig(snapshot=snap, out=tmp_path / "kgc", model={"model": str(out)},
                          embed={"max_length": 32, "max_entity_tokens": 24}))["metrics"]
    assert m["towers"] == "query and key" and m["queries"] == 40


def test_kgscale_run_resumes_an_interrupted_training_stage(tmp_path, shared_datasets, capsys):
    """A `kgscale run` whose training stage dies (its worker killed after the
    step-2 checkpoint, no failures allowed) leaves its checkpoints; running
    the same pipeline again resumes from step 2 instead of starting over, and
    a changed stage would not resume that run."""
    from kgscale.train.run import resumable

    snap = wn18rr_slice(shared_datasets, tmp_path / "wn18rr", n=300)
    stage = {"objective": {"name": "kalm_contrastive"}, "model": {"model": "tiny-llama", "lora": {"enabled": False}},
             "data": {"snapshot": str(snap), "max_samples": 32, "max_length": 48},
             "train": {"num_workers": 1, "strategy": "ddp", "micro_batch_size": 4, "max_steps": 3, "checkpoint_every": 1,
                       "max_failures": 0, "fault_injection": {"rank": 0, "step": 2}}}
    run = {"run": {"dir": str(tmp_path / "run")}, "ray": {"progress_bars": False}, "train": {"t": stage}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    assert main(["run", str(path)]) != 0
    assert "training failed" in capsys.readouterr().err
    out = tmp_path / "run" / "train" / "t"
    assert not out.exists() and (tmp_path / "run" / "train" / "t.ray" / ".fault_injected").is_file()

    assert main(["run", str(path)]) == 0
    assert "train/t resumes its interrupted run from the last checkpoint" in capsys.readouterr().out
    rows = metrics(out)
    assert [r.get("step") for r in rows] == [1, 2, 2, 3] and rows[2]["event"] == "resumed"
    assert json.loads((out / "manifest.json").read_text())["resumed_from_steps"] == [2]
    cfg = build(TrainConfig, {**stage, "train": {**stage["train"], "out": str(out)}})
    fingerprint = (tmp_path / "run" / "train" / "t.ray" / "pipeline_fingerprint").read_text().strip()
    assert resumable(cfg, fingerprint) and not resumable(cfg, "another stage's fingerprint")
