"""`kgscale run` configs: every job in jobs/ validates; stage skipping by fingerprint."""
import json
from pathlib import Path

import pytest

from kgscale.config import ConfigError, read_yaml
from kgscale.pipeline.run import MissingStageError, Pipeline
from kgscale.pipeline.stages import fingerprint, run_stage
from tests.conftest import ROOT

JOBS = sorted((ROOT / "jobs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _mirror(shared_datasets, monkeypatch):
    # jobs name QA sets as dataset:NAME, resolved through the registry's mirror
    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))


def test_required_recipes_exist():
    names = {p.stem for p in JOBS}
    assert {"quickstart", "kalm_wn18rr", "kalm_fb15k237", "kale_csqa_wordnet", "kilm_wn18rr"} <= names


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.stem)
def test_every_job_builds_all_its_stage_configs(path, tmp_path):
    data = read_yaml(path)
    data["run"]["dir"] = str(tmp_path / "run")
    pipeline = Pipeline(data, source=str(path))
    stages = [name for name, *_ in pipeline.plan]
    assert stages[0] == "ingest"
    assert any(s.startswith("train/") for s in stages)
    # every stage writes under the run directory
    assert all(str(out).startswith(str(tmp_path / "run")) for _, out, _, _ in pipeline.plan)


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.stem)
def test_fingerprints_do_not_depend_on_where_the_run_directory_lies(path, tmp_path):
    # each stage's fingerprint view is derived from its config model (its
    # input and output paths left out) and a trained model counts by name, so
    # a run moved to another directory or machine finds its stages current
    here, there = read_yaml(path), read_yaml(path)
    here["run"]["dir"], there["run"]["dir"] = str(tmp_path / "a" / "run"), str(tmp_path / "b" / "moved")
    a, b = Pipeline(here, source=str(path)), Pipeline(there, source=str(path))
    assert a.fp == b.fp and len(a.fp) >= 2


def test_a_stage_section_is_spelled_as_for_its_own_command(tmp_path):
    base = {"run": {"dir": str(tmp_path)}, "ingest": {"source": "dataset:wn18rr"},
            "questions": {"source": "kg", "kg": {"hops": 2}}, "paths": {"search": {"max_hops": 2}},
            "rationales": {"teacher": {"kind": "verbaliser"}}}
    p = Pipeline(base)
    fps = dict(p.fp)
    with pytest.raises(ConfigError, match=r"paths\.search\.max_hpos: unknown key"):
        Pipeline({**base, "paths": {"search": {"max_hpos": 2}}})
    # a sub-section's setting is part of its stage's fingerprint and its downstream's
    q = Pipeline({**base, "questions": {"source": "kg", "kg": {"hops": 3}}})
    assert {n for n in fps if fps[n] != q.fp[n]} == {"questions", "paths", "rationales"}


def test_an_empty_section_runs_its_stage_with_defaults(tmp_path):
    base = {"run": {"dir": str(tmp_path)}, "ingest": {"source": "dataset:wn18rr"},
            "questions": {"source": "kg", "kg": {"hops": 2}}}
    for empty in ({}, None):
        p = Pipeline({**base, "paths": empty})
        assert [n for n, *_ in p.plan] == ["ingest", "questions", "paths"]
    # and a stage whose input stage is missing still says which section to add
    with pytest.raises(MissingStageError, match="add a `questions:` section"):
        Pipeline({"run": {"dir": str(tmp_path)}, "ingest": {"source": "dataset:wn18rr"}, "paths": {}})


def test_quickstart_evaluates_the_starting_model_beside_the_trained_one():
    data = read_yaml(ROOT / "jobs" / "quickstart.yaml")
    p = Pipeline(data)
    assert [n for n, *_ in p.plan] == ["ingest", "questions", "paths", "rationales", "train/kalm", "train/kale",
                                      "eval/kgc_start", "eval/kgc", "eval/qa_start", "eval/qa"]
    # changing an upstream setting changes every downstream fingerprint, not the others
    data2 = read_yaml(ROOT / "jobs" / "quickstart.yaml")
    data2["train"]["kalm"]["train"]["max_steps"] = 7
    q = Pipeline(data2)
    changed = {n for n in p.fp if p.fp[n] != q.fp[n]}
    assert changed == {"train/kalm", "eval/kgc"}  # the starting model's evaluation stays current
    # KALE trains on one part of CommonsenseQA and QA is scored on the other
    assert data["questions"]["part"] == "train" and data["eval"]["qa"]["part"] == "heldout"


def test_kale_recipe_scores_base_sft_and_kale_with_identical_settings():
    p = Pipeline(read_yaml(ROOT / "jobs" / "kale_csqa_wordnet.yaml"))
    names = [n for n, *_ in p.plan]
    assert names[-5:] == ["train/sft", "train/kale", "eval/qa_start", "eval/qa_sft", "eval/qa"]
    with pytest.raises(ConfigError, match="eval.qa.compare"):
        data = read_yaml(ROOT / "jobs" / "kale_csqa_wordnet.yaml")
        data["eval"]["qa"]["compare"] = ["sft"]
        Pipeline(data)


def test_errors_name_the_key_or_the_missing_stage(tmp_path):
    base = {"run": {"dir": str(tmp_path)}, "ingest": {"source": "dataset:wn18rr"}}
    with pytest.raises(ConfigError, match=r"ingest\.sorce: unknown key"):
        Pipeline({**base, "ingest": {"sorce": "x"}})
    with pytest.raises(ConfigError, match="trian: unknown section"):
        Pipeline({**base, "trian": {}})
    with pytest.raises(MissingStageError, match="paths: needs the output of the `questions` stage"):
        Pipeline({**base, "paths": {"search": {}}})
    with pytest.raises(MissingStageError, match=r"eval\.kgc\.model: @kalm names no training run"):
        Pipeline({**base, "eval": {"kgc": {"model": "@kalm"}}})
    with pytest.raises(ConfigError, match=r"train\.k\.train\.max_steps: .*greater than or equal to 1"):
        Pipeline({**base, "train": {"k": {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama"},
                                          "train": {"max_steps": 0}}}})
    with pytest.raises(ConfigError, match=r"run\.force: unknown stage"):
        Pipeline({**base, "run": {"dir": str(tmp_path), "force": ["ingets"]}})


def test_a_finished_stage_with_the_same_fingerprint_is_skipped(tmp_path):
    out = tmp_path / "stage"
    calls = []

    def work():
        calls.append(1)
        out.mkdir(exist_ok=True)
        (out / "manifest.json").write_text(json.dumps({"stage": "x"}))

    fp = fingerprint("x", {"a": 1}, [])
    assert not run_stage("x", out, fp, work).skipped
    assert run_stage("x", out, fp, work).skipped
    assert len(calls) == 1
    assert not run_stage("x", out, fingerprint("x", {"a": 2}, []), work).skipped  # config changed
    assert not run_stage("x", out, fingerprint("x", {"a": 2}, []), work, force=True).skipped
    assert len(calls) == 3


@pytest.mark.parametrize("argv, said", [
    (["eval", "kgc", "embed.batch_size=8"], "embed: is now spelled kgc.embed"),
    (["eval", "kgc", "rank.shards=2"], "rank: is now spelled kgc.rank"),
    (["eval", "kgc", "model.kind=causal"], "model: is now spelled kgc.model"),
    (["eval", "qa", "model.kind=causal"], "model: is now spelled qa.model"),
    # the new spelling is validated by the same models as eval.kgc / eval.qa in a run config
    (["eval", "kgc", "kgc.embed.batch_sise=8"], "kgc.embed.batch_sise: unknown key"),
    (["eval", "kgc", "kgc.rank.shards=-1"], "kgc.rank.shards"),
    (["eval", "qa", "qa.model.knd=causal"], "qa.model.knd: unknown key"),
    # predict's model and embedder are fields of its own section too
    (["predict", "--relation", "r", "embed.batch_size=8"], "embed: is now spelled predict.embed"),
    (["predict", "--relation", "r", "model.kind=causal"], "model: is now spelled predict.model"),
    (["predict", "--relation", "r", "predict.embed.batch_sise=8"], "predict.embed.batch_sise: unknown key"),
])
def test_eval_sections_are_spelled_as_in_a_run_config(argv, said, tmp_path, capsys):
    from kgscale.cli import main

    # each error is raised while the config is read, before Ray or a model starts
    assert main([*argv, "--model", "tiny-llama", "--out", str(tmp_path / "out")]) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "out").exists()
