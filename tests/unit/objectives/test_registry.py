"""The objective registry is the one list of methods: a fourth method is one
module (below, in this file) and one registry entry, and the config's
``objective`` union, its ``data`` section, the ownership check and the
method lookups all follow from it."""
from __future__ import annotations

from typing import ClassVar, Literal

import pytest
import torch
from pydantic import Field, ValidationError

from kgscale.config import StrictModel
from kgscale.objectives import (METHODS, OBJECTIVES, REGISTRY, Objective, ObjectiveOutput, build_objective, method,
                                objective_class, register, registered)
from kgscale.objectives.kale import KALEData
from kgscale.objectives.kalm import KaLMContrastiveSettings, KaLMData
from kgscale.objectives.kilm import KILMData
from kgscale.objectives.method import Method
from kgscale.train.config import CommonData, DataSettings, TrainConfig, data_settings_model, train_config_model
from kgscale.train.methods import foreign_data_settings

# ---------------------------------------------------------------- a fourth method: its whole module


class MineSettings(StrictModel):
    name: Literal["mine"] = "mine"
    weight: float = Field(1.0, ge=0.0)


class Mine(Objective):
    """Batch: ``input_ids`` [B, T]."""

    name: ClassVar[str] = "mine"
    model_kinds = ("causal",)
    batch_keys = ("input_ids",)

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, model, batch):
        loss = self.weight * model(batch["input_ids"].float()).mean()
        return ObjectiveOutput(loss, {"loss": loss.detach()})


class MineData(StrictModel):
    # sentences around each entity
    window: int = Field(3, ge=1)


def _samples(cfg, snapshot, rejects):  # pragma: no cover - not run here
    raise NotImplementedError


def _tokenizer(cfg, base, decoder_start_token_id, kind):  # pragma: no cover - not run here
    raise NotImplementedError


MINE = Method("snapshot", _samples, _tokenizer, MineData)

BASE = {"model": {"model": "tiny-llama"}, "data": {"snapshot": "runs/kg"}}


def _cfg(objective: dict, **data) -> dict:
    return {**BASE, "objective": objective, "data": {**BASE["data"], **data}}


# ---------------------------------------------------------------- the tests


def test_a_fourth_method_is_one_module_and_one_registry_entry():
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        train_config_model().model_validate(_cfg({"name": "mine"}))
    with registered(Mine, MineSettings, MINE):  # the one registry entry
        config = train_config_model()
        cfg = config.model_validate(_cfg({"name": "mine", "weight": 0.5}, window=5))
        assert isinstance(cfg.objective, MineSettings) and cfg.data.window == 5
        assert list(config.model_fields["data"].annotation.model_fields)[-1] == "window"
        # its own field keeps its bounds
        with pytest.raises(ValidationError, match="data.window\n  Input should be greater than or equal to 1"):
            config.model_validate(_cfg({"name": "mine"}, window=0))
        # another method's field is refused for it, and its field for another method
        with pytest.raises(ValidationError, match="data.neighbours is a setting of objective kilm, which objective "
                                                  r"mine does not read; remove it \(objective mine reads data.window "):
            config.model_validate(_cfg({"name": "mine"}, neighbours=2))
        with pytest.raises(ValidationError, match="data.window is a setting of objective mine, which objective "
                                                  "kalm does not read"):
            config.model_validate(_cfg({"name": "kalm"}, window=5))
        assert config.model_validate(_cfg({"name": "kalm"}, inverse=False)).data.inverse is False
        # a recorded config is taken back as it is
        assert config.model_validate(cfg.record()) == cfg
        # the lookups the driver, the sample pipeline and `kgscale run` use
        assert objective_class("mine") is Mine and method("mine") is MINE and METHODS["mine"].input == "snapshot"
        assert MINE.data_fields == ("window",)
        assert foreign_data_settings("mine", cfg.data) is None
        built = build_objective(cfg.objective, known_pairs=torch.zeros(1), num_answers=3, kind="causal")
        assert type(built) is Mine and built.weight == 0.5
    # gone again: the registry and what is built from it
    assert "mine" not in OBJECTIVES and "mine" not in METHODS and "mine" not in REGISTRY
    assert "window" not in train_config_model().model_fields["data"].annotation.model_fields
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        TrainConfig.model_validate(_cfg({"name": "mine"}))


def test_the_data_section_is_the_common_settings_then_each_methods_own():
    # the YAML is unchanged: these names, in this order, as train_config.yaml records them
    assert list(DataSettings.model_fields) == [
        "snapshot", "rationales", "split", "max_samples", "seed", "max_length", "strict", "map_tasks",
        "group_by_length", "max_entity_length", "inverse", "lm_prompt", "skip_flagged", "questions",
        "questions_part", "neighbours", "mask_ratio", "poisson_lambda", "max_description_length"]
    assert list(DataSettings.model_fields) == [*CommonData.model_fields, *KaLMData.model_fields,
                                               *KALEData.model_fields, *KILMData.model_fields]
    for name, m in METHODS.items():
        assert m.data_fields == tuple(m.data.model_fields)
        for f in m.data_fields:  # same default and bounds as the method's own model
            assert DataSettings.model_fields[f].default == m.data.model_fields[f].default, (name, f)
            assert DataSettings.model_fields[f].metadata == m.data.model_fields[f].metadata, (name, f)
    assert {n for n, m in METHODS.items() if m.data is KaLMData} == {"kalm", "kalm_contrastive", "kalm_lm"}
    # a method model's validator comes along: dataset:NAME is resolved
    assert DataSettings.__pydantic_decorators__.field_validators.keys() >= {"_registry_names"}


def test_two_methods_may_not_define_one_data_field():
    class Clash(StrictModel):
        inverse: bool = False

    with pytest.raises(ValueError, match="data.inverse: defined by both KaLMData and Clash"):
        data_settings_model([*METHODS.values(), Method("snapshot", _samples, _tokenizer, Clash)])

    class Common(StrictModel):
        seed: int = 1

    with pytest.raises(ValueError, match="data.seed: defined by both CommonData and Common"):
        data_settings_model([Method("snapshot", _samples, _tokenizer, Common)])


def test_register_refuses_a_taken_name_and_a_settings_model_named_otherwise():
    with pytest.raises(ValueError, match="objective 'kilm' is registered already"):
        register(OBJECTIVES["kilm"], REGISTRY["kilm"].settings, MINE)

    class Other(StrictModel):
        name: Literal["other"] = "other"

    with pytest.raises(ValueError, match=r"Other: its `name` field must be Literal\['mine'\]"):
        register(Mine, Other, MINE)
    assert "mine" not in REGISTRY


def test_an_objective_takes_the_driver_inputs_it_reads():
    # KaLM's contrastive objectives read the known pairs, the entity count and
    # the backbone's kind through their own from_settings, not a name check
    pairs = torch.tensor([5, 1])
    masked = build_objective(KaLMContrastiveSettings(), known_pairs=pairs, num_answers=3, kind="encoder")
    assert masked.known_pairs.tolist() == [1, 5] and masked.num_answers == 3 and masked.pooling == "mean"
    unmasked = build_objective(KaLMContrastiveSettings(mask_known_triples=False), known_pairs=pairs, num_answers=3)
    assert unmasked.known_pairs is None and unmasked.pooling == "last"
    kilm = build_objective(REGISTRY["kilm"].settings(), known_pairs=pairs, num_answers=3, kind="seq2seq")
    assert type(kilm) is OBJECTIVES["kilm"]
