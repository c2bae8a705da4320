import json

import pytest

from kgscale.kg.rejects import RejectLog
from kgscale.output import REJECTS, OutputExistsError, StageOutput, atomic_dir, read_manifest, write_manifest


def test_atomic_dir_publishes_only_on_success(tmp_path):
    out = tmp_path / "stage"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.parquet").write_text("x")
            raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        write_manifest(tmp, "test", counts={"n": 1})
        assert not out.exists()
    assert read_manifest(out)["counts"] == {"n": 1}
    assert json.loads((out / "manifest.json").read_text())["stage"] == "test"


def test_overwrite_replaces_only_when_complete(tmp_path):
    out = tmp_path / "stage"
    with atomic_dir(out) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_dir(out):
            pass
    with pytest.raises(ValueError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "v").write_text("2")
            raise ValueError
    assert (out / "v").read_text() == "1"
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (out / "v").read_text() == "2" and len(list(tmp_path.iterdir())) == 1


def test_read_manifest_of_unfinished_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished kgscale output"):
        read_manifest(tmp_path)


def test_stage_output_refuses_first_and_finishes_with_rejects_and_timings(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    # an existing output is refused when the stage starts, before any work, with the stage's remedy
    with pytest.raises(OutputExistsError, match="pass --resume"):
        StageOutput("demo", out, remedy="pass --resume")
    out.rmdir()
    stage = StageOutput("demo", out)
    with stage.timer("work"):
        pass
    rejects = RejectLog()
    rejects.add("in.nt", 0, "bad term: x", "x")
    with stage.writing() as tmp:
        (tmp / "data.txt").write_text("1")
        manifest = stage.finish(rejects, counts={"rows": 1})
        assert not out.exists()  # published only when the block ends
    assert read_manifest(out) == manifest
    assert manifest["stage"] == "demo" and manifest["counts"] == {"rows": 1}
    assert manifest["rejected"] == {"total": 1, "by_reason": {"bad term": 1}}
    assert set(manifest["timings_s"]) == {"work", "total"}
    assert [json.loads(x)["reason"] for x in (out / REJECTS).read_text().splitlines()] == ["bad term: x"]
    with pytest.raises(RuntimeError, match="inside"):
        stage.finish()


def test_stage_output_failure_leaves_the_old_output(tmp_path):
    out = tmp_path / "stage"
    with StageOutput("demo", out).writing() as tmp:
        (tmp / "v").write_text("1")
    stage = StageOutput("demo", out, overwrite=True)
    with pytest.raises(ValueError):
        with stage.writing() as tmp:
            (tmp / "v").write_text("2")
            raise ValueError("interrupted")
    assert (out / "v").read_text() == "1" and stage.dir is None
