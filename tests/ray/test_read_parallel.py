"""The ingest read runs its read tasks side by side from the start.

Ray Data's resource allocator sees no CPUs for the first second of an
execution and lets one task run at a time meanwhile; `read_dataset` turns it
off for the ingest read (see kgscale/kg/sources/ray_read.py). With it on,
two read tasks of 0.8 s each on this session's 2-CPU Ray ran one after the
other; this test then fails.
"""
from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import ray

from kgscale.kg.schema import RawRows
from kgscale.kg.sources.line_datasource import RangeDatasource
from kgscale.kg.lines import ByteRange
from kgscale.kg.sources.ray_read import read_dataset

TASK_S = 0.8


def test_two_read_tasks_run_at_once_on_two_cpus(tmp_path):
    data = tmp_path / "data.nt"
    data.write_bytes(b"x\n" * 1000)
    log = tmp_path / "tasks.jsonl"

    def plan(parallelism):
        return [(ByteRange(str(data), 0, 1000), "train"), (ByteRange(str(data), 1000, -1), "train")]

    def read(rng: ByteRange, role: str):
        start = time.time()
        time.sleep(TASK_S)  # a read task that holds its CPU slot for TASK_S
        rows = RawRows()
        rows.triple(role, f"h{rng.start}", "r", "t", str(data), rng.start)
        with open(log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}) + "\n")
        yield rows.table()

    ds = read_dataset(RangeDatasource(plan, read, data.stat().st_size))
    assert ds.materialize().count() == 2
    assert ds.context.op_resource_reservation_enabled is False
    assert ray.data.DataContext.get_current().op_resource_reservation_enabled is True  # process-wide default untouched

    tasks = sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda t: t["start"])
    assert len(tasks) == 2
    first, second = tasks
    assert first["pid"] != second["pid"], tasks
    # side by side: the second started before the first had finished
    assert second["start"] < first["end"], tasks


def test_read_dataset_asks_for_one_block_per_planned_range(tmp_path):
    # a sparse 1 GiB file: ranges sized like a large input's (no disk used).
    # Ray Data's own choice for it splits each task's output
    # (ReadRange->SplitBlocks(9): 12 blocks from these 4 tasks)
    data = tmp_path / "large.nt"
    with open(data, "wb") as f:
        f.truncate(1 << 30)
    quarter = 1 << 28

    def plan(parallelism):
        return [(ByteRange(str(data), i * quarter, -1 if i == 3 else (i + 1) * quarter), "train") for i in range(4)]

    def read(rng: ByteRange, role: str):
        rows = RawRows()
        for i in range(3):
            rows.triple(role, f"h{rng.start}-{i}", "r", "t", str(data), rng.start)
        yield rows.table()

    ds = read_dataset(RangeDatasource(plan, read, 1 << 30)).materialize()
    assert ds.num_blocks() == 4
    heads = pa.concat_tables(ray.get(ds.to_arrow_refs()))["head"].to_pylist()
    assert sorted(heads) == sorted(f"h{s}-{i}" for s in range(0, 1 << 30, quarter) for i in range(3))
