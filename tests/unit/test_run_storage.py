"""A run directory in object storage: stages copied up when they finish,
copied down (not run again) where they are current, against a real
S3-compatible server on 127.0.0.1 (moto) reached over HTTP by pyarrow."""
from __future__ import annotations

import json

import pytest

from kgscale.config import ConfigError
from kgscale.pipeline.stages import fingerprint, run_stage
from kgscale.pipeline.storage import RunStorage, StorageError
from tests.servers.s3 import CREDENTIALS, S3Server


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def _stage_writer(out, calls, payload="weights"):
    def work():
        calls.append(1)
        (out / "sub").mkdir(parents=True, exist_ok=True)
        (out / "sub" / "model.bin").write_text(payload)
        (out / "manifest.json").write_text(json.dumps({"stage": "x"}))
    return work


def test_a_stage_goes_up_when_it_finishes_and_comes_down_instead_of_rerunning(s3, tmp_path):
    uri = s3.uri("runs", "try1")
    calls = []
    here = RunStorage(uri, tmp_path / "machine1")
    here.check()
    out = here.local / "train" / "kalm"
    fp = fingerprint("x", {"a": 1}, [])
    result = run_stage("train/kalm", out, fp, _stage_writer(out, calls), storage=here)
    assert not result.skipped and calls == [1]
    fs = s3.filesystem()
    with fs.open_input_stream("runs/try1/train/kalm/sub/model.bin") as f:
        assert f.read() == b"weights"
    assert here.remote_fingerprint("train/kalm") == fp

    # another machine with an empty working directory: copied down, not run
    there = RunStorage(uri, tmp_path / "machine2")
    out2 = there.local / "train" / "kalm"
    result = run_stage("train/kalm", out2, fp, _stage_writer(out2, calls), storage=there)
    assert result.skipped and result.pulled and calls == [1]
    assert (out2 / "sub" / "model.bin").read_text() == "weights"
    assert json.loads((out2 / "manifest.json").read_text())["fingerprint"] == fp

    # a changed config runs again and replaces the copy up there
    fp2 = fingerprint("x", {"a": 2}, [])
    result = run_stage("train/kalm", out2, fp2, _stage_writer(out2, calls, "new"), storage=there)
    assert not result.skipped and calls == [1, 1]
    with fs.open_input_stream("runs/try1/train/kalm/sub/model.bin") as f:
        assert f.read() == b"new"
    assert here.remote_fingerprint("train/kalm") == fp2


def test_an_upload_cut_short_reads_as_not_finished(s3, tmp_path):
    uri = s3.uri("runs", "cut")
    storage = RunStorage(uri, tmp_path / "w")
    out = storage.local / "snapshot"
    fp = fingerprint("x", {}, [])
    calls = []
    run_stage("ingest", out, fp, _stage_writer(out, calls), storage=storage)
    s3.filesystem().delete_file("runs/cut/snapshot/manifest.json")  # the manifest goes up last
    assert storage.remote_fingerprint("snapshot") is None
    fresh = RunStorage(uri, tmp_path / "w2")
    out2 = fresh.local / "snapshot"
    assert not run_stage("ingest", out2, fp, _stage_writer(out2, calls), storage=fresh).skipped
    assert calls == [1, 1]


def test_a_stage_current_here_but_not_up_there_is_copied_up(s3, tmp_path):
    local = tmp_path / "w"
    out = local / "paths"
    fp = fingerprint("p", {}, [])
    calls = []
    run_stage("paths", out, fp, _stage_writer(out, calls))  # a local run first
    storage = RunStorage(s3.uri("runs", "later"), local)
    assert run_stage("paths", out, fp, _stage_writer(out, calls), storage=storage).skipped
    assert calls == [1] and storage.remote_fingerprint("paths") == fp


def test_bad_uris_and_unreachable_storage_are_named(s3, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"run\.dir: cannot open nosuchscheme://x"):
        RunStorage("nosuchscheme://x/y", tmp_path)
    # nothing listens on this port: the write check fails before any stage runs
    dead = f"s3://runs/x?endpoint_override=127.0.0.1:{_closed_port()}&scheme=http"
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match=r"run\.dir: cannot write to s3://runs/x:"):
        RunStorage(dead, tmp_path).check()


def test_credentials_and_the_query_string_are_never_shown(s3, tmp_path):
    storage = RunStorage(s3.uri("runs", "q").replace("s3://", "s3://testing:testing@"), tmp_path)
    assert str(storage) == "s3://runs/q"
    storage.check()  # the credentials in the URI work


def _closed_port() -> int:
    from tests.servers.process import free_port

    return free_port()
