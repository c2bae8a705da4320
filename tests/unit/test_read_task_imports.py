"""A read task's function must not make the worker that runs it import Ray
Data: a fresh Ray worker spends 0.6 s on that import (kgscale.kg.sources.ray_read).
(pandas is not asked about: pyarrow imports it the first time it converts a
Python list, in every parse.)"""
import subprocess
import sys

import cloudpickle
import pytest

from kgscale.kg.rdf.config import RdfConfig
from kgscale.kg.sources.benchmark import BenchmarkSource
from kgscale.kg.sources.rdf_files import RdfFileSource

# what a worker does with a task's function: unpickle it, run it, report what it imported
_WORKER = """
import sys, cloudpickle
rows = sum(t.num_rows for t in cloudpickle.loads(sys.stdin.buffer.read())())
print(rows, "ray.data" in sys.modules)
"""


def _in_fresh_process(read_fn) -> tuple[int, bool]:
    out = subprocess.run([sys.executable, "-c", _WORKER], input=cloudpickle.dumps(read_fn),
                         capture_output=True, check=True).stdout.split()
    return int(out[0]), out[1] == b"True"


@pytest.mark.parametrize("kind", ["nt", "ttl", "benchmark"])
def test_a_read_tasks_function_runs_without_importing_ray_data(tmp_path, kind):
    if kind == "benchmark":
        (tmp_path / "train.txt").write_text("a\tr\tb\nb\tr\tc\n")
        (tmp_path / "valid.txt").write_text("a\tr\tc\n")
        (tmp_path / "test.txt").write_text("c\tr\ta\n")
        (tmp_path / "entities.tsv").write_text("a\tA\tthe first\nb\tB\t\nc\tC\t\n")
        (tmp_path / "relations.tsv").write_text("r\trelates to\n")
        source = BenchmarkSource(tmp_path)
    else:
        body = "<http://x/a> <http://x/r> <http://x/b> .\n<http://x/b> <http://x/r> <http://x/c> .\n"
        (tmp_path / f"g.{kind}").write_text(body)
        source = RdfFileSource(str(tmp_path / f"g.{kind}"), RdfConfig())
    tasks = source.datasource().get_read_tasks(-1)
    assert tasks
    rows, ray_data = _in_fresh_process(tasks[0].read_fn)
    assert rows >= 1
    assert not ray_data
