"""The real `kgscale` console script, as a user runs it (its own Ray)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_benchmark

KGSCALE = str(Path(sys.executable).parent / "kgscale")


def _run(*args, env=None):
    return subprocess.run([KGSCALE, *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def test_ingest_and_info_end_to_end(tmp_path, shared_datasets):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  read_task_mb: 1\nray:\n  num_cpus: 2\n  progress_bars: false\n")
    r = _run("ingest", "dataset:wn18rr", "--out", str(tmp_path / "wn"), "--config", str(cfg),
             env={"KGSCALE_MIRROR": str(shared_datasets)})
    assert r.returncode == 0, r.stderr
    assert "40,943 entities, 11 relations, 86,835 / 3,034 / 3,134 train / valid / test triples" in r.stdout
    r = _run("info", str(tmp_path / "wn"), "--json")
    info = json.loads(r.stdout)
    assert info["triples"] == {"train": 86835, "valid": 3034, "test": 3134}
    assert info["train_graph"]["edges_both_directions"] == 2 * 86835
    assert sum(info["train_graph"]["degree"]["histogram"].values()) == 40943
    r = _run("info", str(tmp_path / "wn"))
    assert "entities   40,943" in r.stdout and "histogram" in r.stdout


def test_errors_exit_2_and_name_the_problem(tmp_path):
    src = write_benchmark(tmp_path / "src", train="a\tr\n", entities="id\tname\tdescription\na\tA\t\n",
                          relations="id\ttext\nr\tr\n")
    cases = [
        (["ingest", str(src), "--out", str(tmp_path / "o"), "ingest.read_tsk_mb=2"], "ingest.read_tsk_mb: unknown key"),
        (["ingest", str(src), "--out", str(tmp_path / "o"), "ray.num_cpus=many"], "ray.num_cpus: "),
        (["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "source not found"),
        (["ingest", str(src), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "no.yaml")], "config file not found"),
        (["info", str(tmp_path / "nosnap")], "snapshot not found"),
        (["ingest", str(src), "--out", str(tmp_path / "o"), "--strict", "ray.num_cpus=1"], "train.txt:1: wrong number of fields"),
    ]
    for args, message in cases:
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
