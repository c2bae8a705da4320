"""Model names handed to Ray workers: a local directory named relative to the
driver's working directory becomes absolute (workers run elsewhere); hub ids,
packaged and tiny names stay as they are."""
from kgscale.models.backbone import BackboneConfig, with_absolute_path


def test_relative_local_paths_become_absolute_and_names_stay(tmp_path, monkeypatch):
    (tmp_path / "runs" / "kalm").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    got = with_absolute_path(BackboneConfig(model="runs/kalm", seed=3))
    assert got.model == str(tmp_path / "runs" / "kalm") and got.seed == 3
    for name in ("tiny-llama", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M", str(tmp_path / "runs" / "kalm")):
        assert with_absolute_path(BackboneConfig(model=name)).model == name
