"""`kgscale run` with its run directory in object storage (a real
S3-compatible server on 127.0.0.1): the stages go up as they finish, a run
on another machine (another working directory) finds them current and copies
them down instead of running them, and the summary lands beside them."""
from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest
import yaml

from kgscale.cli import main
from tests.conftest import write_benchmark
from tests.servers.s3 import CREDENTIALS, S3Server

pytestmark = pytest.mark.ray


@pytest.fixture()
def s3(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    server = S3Server()
    yield server
    server.close()


def test_a_run_kept_in_s3_continues_on_another_machine(tmp_path, s3, capsys):
    src = write_benchmark(tmp_path / "kg", train="a\tr\tb\nb\tr\tc\nc\ts\ta\n", valid="a\ts\tc\n", test="b\ts\ta\n",
                          entities="id\tname\tdescription\na\tA\tfirst\nb\tB\tsecond\nc\tC\tthird\n",
                          relations="id\ttext\nr\trelated to\ns\tsimilar to\n")
    uri = s3.uri("kgscale-runs", "team/try1")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"run": {"dir": uri}, "ray": {"progress_bars": False},
                                      "ingest": {"source": str(src)}}))

    assert main(["run", str(config), f"run.local_dir={tmp_path / 'machine1'}"]) == 0
    printed = capsys.readouterr().out
    assert "kgscale run: ingest done" in printed and "-> s3://kgscale-runs/team/try1/snapshot" in printed
    assert "endpoint_override" not in printed  # the query string is not printed
    fs = s3.filesystem()
    with fs.open_input_stream("kgscale-runs/team/try1/snapshot/manifest.json") as f:
        manifest = json.loads(f.read())
    assert manifest["counts"]["triples"] == {"train": 3, "valid": 1, "test": 1} and manifest["fingerprint"]
    with fs.open_input_stream("kgscale-runs/team/try1/summary.json") as f:
        assert json.loads(f.read())["stages"][0]["stage"] == "ingest"

    # a second machine: the snapshot is current in S3, so it is copied, not ingested again
    assert main(["run", str(config), f"run.local_dir={tmp_path / 'machine2'}"]) == 0
    printed = capsys.readouterr().out
    assert "kgscale run: ingest is current in s3://kgscale-runs/team/try1, copied here" in printed
    copied = tmp_path / "machine2" / "snapshot"
    assert json.loads((copied / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    assert sorted(p.name for p in copied.iterdir()) == sorted(
        i.base_name for i in fs.get_file_info(pafs.FileSelector("kgscale-runs/team/try1/snapshot")))
