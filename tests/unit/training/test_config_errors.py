"""Bad configs fail on the driver, before Ray or any worker starts, with a
message that names the key and what to change."""
from __future__ import annotations

import pytest
import yaml

from kgscale.cli import main
from kgscale.config import ConfigError, build
from kgscale.train.config import TrainConfig
from kgscale.train.run import check_batch_fits
from tests.training_fixtures import tiny_snapshot, write_rationales


@pytest.fixture()
def write_config(tmp_path):
    def write(**sections) -> str:
        data = {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama"},
                "data": {"snapshot": str(tiny_snapshot(tmp_path / "snap"))},
                "train": {"out": str(tmp_path / "out")}}
        for key, value in sections.items():
            data[key] = value if value is None or not isinstance(value, dict) else {**data.get(key, {}), **value}
        data = {k: v for k, v in data.items() if v is not None}
        path = tmp_path / "train.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return write


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["train", *argv])
    return code, capsys.readouterr().err


def test_unknown_objective(write_config, capsys):
    code, err = run_cli(capsys, write_config(objective={"name": "kalmm"}))
    assert code == 2 and "objective" in err and "kalmm" in err and "'kale'" in err


def test_unknown_key_names_it(write_config, capsys):
    code, err = run_cli(capsys, write_config(), "train.micro_batch=4")
    assert code == 2 and "train.micro_batch: unknown key" in err


def test_missing_snapshot(write_config, capsys, tmp_path):
    code, err = run_cli(capsys, write_config(data={"snapshot": str(tmp_path / "nope")}))
    assert code == 2 and "snapshot not found" in err and "kgscale ingest" in err


def test_kale_needs_rationales(write_config, capsys, tmp_path):
    code, err = run_cli(capsys, write_config(objective={"name": "kale"}))
    assert code == 2 and "data.rationales: required for objective kale" in err
    code, err = run_cli(capsys, write_config(objective={"name": "kale"}, data={"rationales": str(tmp_path / "nope")}))
    assert code == 2 and "rationales not found" in err


def test_model_that_cannot_be_loaded(write_config, capsys, tmp_path):
    (tmp_path / "empty_model").mkdir()
    code, err = run_cli(capsys, write_config(model={"model": str(tmp_path / "empty_model")}))
    assert code == 2 and "not a Hugging Face model directory" in err
    code, err = run_cli(capsys, write_config(model={"model": str(tmp_path / "missing.gguf")}))
    assert code == 2 and "model file not found" in err


def test_objective_and_model_kind_must_match(write_config, capsys):
    """An objective given a backbone it cannot train says which backbones it takes."""
    code, err = run_cli(capsys, write_config(objective={"name": "kilm"}))
    assert code == 2 and "model.model: objective kilm trains seq2seq models" in err and "tiny-bart" in err
    code, err = run_cli(capsys, write_config(model={"model": "tiny-bart"}))
    assert code == 2 and "objective kalm trains causal models" in err
    # the LM term needs a vocabulary head: an encoder trains with kalm_contrastive only
    code, err = run_cli(capsys, write_config(model={"model": "tiny-bert"}))
    assert code == 2 and "objective kalm trains causal models but 'tiny-bert' is an encoder model" in err
    code, err = run_cli(capsys, write_config(objective={"name": "kalm_contrastive"}, model={"model": "tiny-bart"}))
    assert code == 2 and "trains causal or encoder models" in err and "all-minilm-l6-v2" in err


def test_self_negatives_with_gradient_need_head_views_in_the_batch(write_config, capsys):
    """A self-negative setting that the batch cannot serve is a config error
    before any worker starts."""
    code, err = run_cli(capsys, write_config(objective={"name": "kalm_contrastive", "entity_bank": True,
                                                        "self_negatives": "grad"}))
    assert code == 2 and "self_negatives: grad needs head views encoded with gradient" in err


def test_lora_targets_that_do_not_exist(write_config, capsys):
    code, err = run_cli(capsys, write_config(model={"model": "tiny-llama", "lora": {"target_modules": ["c_attn"]}}))
    assert code == 2 and "model.lora.target_modules" in err and "gate_proj" in err


def test_sequence_longer_than_the_model(write_config, capsys):
    code, err = run_cli(capsys, write_config(data={"max_length": 4096}))
    assert code == 2 and "data.max_length: 4096 is more than the model's 512 positions" in err


def test_missing_output(write_config, capsys):
    code, err = run_cli(capsys, write_config(train={"out": None}))
    assert code == 2 and "train.out: required" in err


def test_a_batch_that_does_not_fit():
    cfg = build(TrainConfig, {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama"},
                              "train": {"num_workers": 2, "micro_batch_size": 8, "grad_accum_steps": 2}})
    check_batch_fits(cfg, 32)
    with pytest.raises(ConfigError, match=r"one optimiser step takes 32 samples .* the data has 31"):
        check_batch_fits(cfg, 31)


def test_rationales_fixture_is_valid_input(tmp_path):
    # the KALE fixture the Ray tests train on passes the driver's checks
    from kgscale.train.run import preflight

    cfg = build(TrainConfig, {"objective": {"name": "kale"}, "model": {"model": "tiny-llama"},
                              "data": {"rationales": str(write_rationales(tmp_path / "r"))},
                              "train": {"out": str(tmp_path / "o")}})
    assert preflight(cfg).kind == "causal"


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_a_runs_recorded_config_trains_again_as_it_is(tmp_path, strategy):
    # train_config.yaml holds every setting, defaults included; under DDP it
    # wrote train.zero_stage, which the driver then refused as not applying
    from kgscale.train.run import preflight

    cfg = build(TrainConfig, {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama"},
                              "data": {"snapshot": str(tiny_snapshot(tmp_path / "snap"))},
                              "train": {"out": str(tmp_path / "o"), "strategy": strategy}})
    again = build(TrainConfig, yaml.safe_load(yaml.safe_dump(cfg.record())))
    assert preflight(again).kind == "causal"
    assert again.model_dump() == cfg.model_dump()


def test_every_job_config_in_jobs_is_valid(shared_datasets, monkeypatch):
    """The YAML configs in jobs/train/ validate (no unknown or secret-looking
    key; a `dataset:` name resolves, from the mirror as a user's would)."""
    from pathlib import Path

    from kgscale.config import read_yaml

    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))

    jobs = sorted((Path(__file__).resolve().parents[3] / "jobs" / "train").glob("*.yaml"))
    train_jobs = [p for p in jobs if "objective" in read_yaml(p)]
    assert len(train_jobs) >= 4
    for path in train_jobs:
        build(TrainConfig, read_yaml(path), source=str(path))


def test_a_lora_preflight_resolves_the_backbone_and_reads_its_config_once(tmp_path, monkeypatch):
    # the objective's kinds, the tokenizer, the LoRA targets and the sequence
    # length are all checked against one resolved-backbone record
    import transformers

    from kgscale.models import backbone
    from kgscale.train.run import preflight

    cfg = build(TrainConfig, {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama", "lora": {"enabled": True}},
                              "data": {"snapshot": str(tiny_snapshot(tmp_path / "snap"))},
                              "train": {"out": str(tmp_path / "o")}})
    preflight(cfg)  # builds the tiny model's directory on first use
    calls = {"resolve": 0, "config": 0}
    real_resolve, real_config = backbone.resolve, transformers.AutoConfig.from_pretrained

    def counted_resolve(c):
        calls["resolve"] += 1
        return real_resolve(c)

    def counted_config(*a, **k):
        calls["config"] += 1
        return real_config(*a, **k)

    monkeypatch.setattr(backbone, "resolve", counted_resolve)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", counted_config)
    assert preflight(cfg).kind == "causal"
    assert calls == {"resolve": 1, "config": 1}


def test_a_data_setting_of_another_method_is_refused(write_config, capsys):
    # data.neighbours is KILM's: a KaLM run that sets it would silently ignore it
    code, err = run_cli(capsys, write_config(data={"neighbours": 8}))
    assert code == 2 and "data.neighbours is a setting of objective kilm" in err
    assert "which objective kalm does not read" in err and "data.max_entity_length" in err
    assert "Value error" not in err and "(got dict)" not in err
    code, err = run_cli(capsys, write_config(objective={"name": "kilm"}, model={"model": "tiny-bart"},
                                             data={"questions_part": "train"}))
    assert code == 2 and "data.questions_part is a setting of objective kale" in err
    # every default is every method's: a recorded config (all fields written) is taken back
    cfg = TrainConfig(objective={"name": "kale"}, model={"model": "tiny-llama"},
                      data={"rationales": "r", "questions_part": "train"})
    assert TrainConfig(**cfg.record()).data.questions_part == "train"
    # a field of the KaLM family suits each of its objectives
    for name in ("kalm", "kalm_contrastive", "kalm_lm"):
        TrainConfig(objective={"name": name}, model={"model": "tiny-llama"}, data={"max_entity_length": 16})
