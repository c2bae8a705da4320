"""Hostile names and a full disk in the run directory: training-run names and
pulled object keys stay inside it, credentials never appear in an error,
outputs are fsynced before they are published, and a full disk is an error
that says so (issue 17)."""
from __future__ import annotations

import json
import os

import pyarrow.fs as pafs
import pytest

from kgscale.config import ConfigError
from kgscale.output import DiskFullError, atomic_dir
from kgscale.pipeline.run import Pipeline
from kgscale.pipeline.storage import RunStorage, StorageError
from tests.servers.s3 import CREDENTIALS, S3Server

TRAIN = {"objective": {"name": "kalm"}, "model": {"model": "tiny-llama"}, "train": {"max_steps": 1}}


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "..", ".hidden", "", "a" * 200, "x\x00y"])
def test_a_training_run_name_cannot_leave_the_run_directory(tmp_path, name):
    base = {"run": {"dir": str(tmp_path / "run")}, "ingest": {"source": "dataset:wn18rr"}}
    with pytest.raises(ConfigError, match="a training run's name may hold only"):
        Pipeline({**base, "train": {name: TRAIN}})


def test_an_ordinary_training_run_name_builds(tmp_path):
    base = {"run": {"dir": str(tmp_path / "run")}, "ingest": {"source": "dataset:wn18rr"}}
    p = Pipeline({**base, "train": {"kalm-v1.2_b": TRAIN}})
    assert any(name == "train/kalm-v1.2_b" for name, *_ in p.plan)


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.close()


def test_pulled_object_keys_stay_inside_the_local_run_directory(s3, tmp_path, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    fs = s3.filesystem()
    fs.create_dir("runs/evil/train/k", recursive=True)
    with fs.open_output_stream("runs/evil/train/k/manifest.json") as f:
        f.write(json.dumps({"stage": "x"}).encode())
    # S3 keys are strings: "../" in one is just characters there, and a path
    # here. pyarrow refuses to write such a key, so it goes in as raw HTTP
    # (moto takes an unsigned PUT), as any other client could put it
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=30)
    conn.request("PUT", "/runs/evil/train/k/%2E%2E/%2E%2E/%2E%2E/%2E%2E/escaped.txt", body=b"owned")
    assert conn.getresponse().status == 200
    conn.close()
    listed = [i.path for i in fs.get_file_info(pafs.FileSelector("runs/evil", recursive=True))]
    assert any(".." in p for p in listed), listed
    storage = RunStorage(s3.uri("runs", "evil"), tmp_path / "local" / "run")
    with pytest.raises(StorageError, match="its path leaves the run directory"):
        storage.pull("train/k")
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert not (tmp_path / "local" / "run" / "train" / "k").exists()


def test_credentials_in_an_unknown_uri_are_not_echoed():
    with pytest.raises(ConfigError) as err:
        RunStorage("foo://AKIAXXXX:s3cr3t-key@bucket/runs/x")
    assert "s3cr3t" not in str(err.value) and "AKIAXXXX" not in str(err.value)
    assert "foo://bucket/runs/x" in str(err.value)


def test_a_full_disk_is_an_error_that_says_so_and_replaces_nothing(tmp_path):
    out = tmp_path / "snap"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(DiskFullError, match="no space left to write"):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "data").symlink_to("/dev/full")  # the kernel answers every write with ENOSPC
            with open(tmp / "data", "w") as f:
                f.write("x" * 10000)
                f.flush()
    assert (out / "old.txt").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_outputs_are_fsynced_before_they_are_published(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.parquet").write_text("x")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.json").write_text("{}")
    names = {os.path.basename(p) for p in synced}
    assert {"a.parquet", "b.json", "sub"} <= names and str(tmp_path) in synced  # the parent, after the rename
