import pytest

from pathlib import Path

from kgscale.config import (ConfigError, StrictModel, apply_overrides, build, fingerprint_view, read_yaml,
                            runtime_setting, secret_from_env, stage_path)


class Inner(StrictModel):
    size: int = 1
    names: list[str] = []


class Outer(StrictModel):
    path: str
    flag: bool = False
    inner: Inner = Inner()


def load(model, path, overrides=()):
    """What every command does with --config and key=value overrides."""
    return build(model, apply_overrides(read_yaml(path), list(overrides)), source=str(path))


def test_yaml_plus_overrides_with_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("path: a\ninner:\n  size: 2\n")
    cfg = load(Outer, f, ["inner.size=5", "flag=true", "inner.names=[x, y]"])
    assert cfg.path == "a" and cfg.flag is True and cfg.inner.size == 5 and cfg.inner.names == ["x", "y"]


def test_unknown_key_is_named_with_its_dotted_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("path: a\ninner:\n  sise: 2\n")
    with pytest.raises(ConfigError, match=r"inner\.sise: unknown key"):
        load(Outer, f)


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"run\.inner\.size: .*integer.*'big'"):
        build(Outer, {"path": "a", "inner": {"size": "big"}}, section="run")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"path: required key is missing"):
        build(Outer, {})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("path: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load(Outer, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(Outer, lst)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="path is a value, not a section"):
        apply_overrides({"path": "a"}, ["path.x=1"])


def test_secrets_are_refused_in_configs_and_read_from_env(monkeypatch):
    with pytest.raises(ConfigError, match=r"neo4j\.password: secrets may not be written in configs"):
        build(Outer, {"path": "a", "neo4j": {"password": "hunter2"}})
    monkeypatch.delenv("KGS_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="KGS_TEST_SECRET is not set") as err:
        secret_from_env("KGS_TEST_SECRET", what="neo4j password")
    monkeypatch.setenv("KGS_TEST_SECRET", "s3cret")
    assert secret_from_env("KGS_TEST_SECRET", what="x") == "s3cret"


class Settings(StrictModel):
    where: Path = stage_path("output")
    size: int = 1


class Stage(StrictModel):
    reads: Path = stage_path("input")
    out: Path = stage_path("output")
    optional: Path | None = stage_path("input", None)
    settings: Settings
    ray: dict = runtime_setting(default_factory=dict)
    overwrite: bool = False
    strict: bool = False


def test_fingerprint_view_leaves_out_stage_paths_at_every_depth_and_overwrite():
    a = Stage(reads="/a/in", out="/a/out", optional="/a/x", settings={"where": "/a/w", "size": 2}, overwrite=True,
              ray={"address": "auto"})
    b = Stage(reads="/b/in", out="/b/out", settings={"where": "/b/w", "size": 2})
    # where it reads and writes, and where it runs (a runtime setting), are not in the view
    assert fingerprint_view(a) == fingerprint_view(b) == {"settings": {"size": 2}, "strict": False}
    # a setting is in the view: changing it changes the fingerprint
    assert fingerprint_view(a.model_copy(update={"strict": True})) != fingerprint_view(a)
    with pytest.raises(ValueError, match="role must be"):
        stage_path("inptu")
