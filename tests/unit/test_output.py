import json

import pytest

from kgscale.output import OutputExistsError, atomic_dir, read_manifest, write_manifest


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
