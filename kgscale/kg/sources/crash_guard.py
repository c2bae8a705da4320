"""A read task that kills its worker becomes a reject, not an endless retry.

Ray Data runs read tasks with ``max_retries=-1``: a task whose worker dies
(a parser's segfault, the kernel's OOM killer) is started again forever, and
the ingest never ends. Here each read task gets ``READ_TASK_RETRIES``
retries, and tells a small ledger actor when it starts and when it has read
its last block. When the read fails, the tasks the ledger saw start more
than once and never finish are the ones whose workers died; the read is run
again without them (at most ``MAX_ROUNDS`` times), and each becomes a reject
for its file or range (``read task crashed``), so ``--strict`` names it and
the counts still add up. A task that fails with an ordinary exception is not
retried by Ray and is not a crash: that error is raised as before.
"""
from __future__ import annotations

import logging
import warnings

import pyarrow as pa
import ray
from ray.data import Datasource, ReadTask

from kgscale.kg.schema import REJECT, raw_table
from kgscale.kg.sources.line_datasource import LineFileDatasource, RangeDatasource
from kgscale.kg.sources.ray_read import read_dataset

log = logging.getLogger("kgscale.ingest")

READ_TASK_RETRIES = 1
MAX_ROUNDS = 3


@ray.remote(num_cpus=0)
class _Ledger:
    def __init__(self) -> None:
        self.starts: dict[int, int] = {}
        self.done: set[int] = set()

    def start(self, i: int) -> None:
        self.starts[i] = self.starts.get(i, 0) + 1

    def finish(self, i: int) -> None:
        self.done.add(i)

    def crashed(self) -> list[int]:
        return sorted(i for i, n in self.starts.items() if n > 1 and i not in self.done)


def _guarded(read_fn, ledger, i: int):
    ray.get(ledger.start.remote(i))
    yield from read_fn()
    ray.get(ledger.finish.remote(i))


class _Guarded(Datasource):
    """``inner``'s read tasks less the ``skip`` ones, each reporting to ``ledger``."""

    def __init__(self, inner: Datasource, ledger, skip: set[int]) -> None:
        self.inner, self.ledger, self.skip = inner, ledger, skip
        self.tasks: list[ReadTask] | None = None

    def estimate_inmemory_data_size(self):
        return self.inner.estimate_inmemory_data_size()

    def inner_tasks(self) -> list[ReadTask]:
        if self.tasks is None:  # planned once, so a task's index means the same range every round
            self.tasks = self.inner.get_read_tasks(-1)
        return self.tasks

    def get_read_tasks(self, parallelism: int, **kwargs) -> list[ReadTask]:
        out = []
        for i, t in enumerate(self.inner_tasks()):
            if i not in self.skip:
                out.append(ReadTask(_bind(t, self.ledger, i), t.metadata, schema=t.schema))
        return out


def _bind(task: ReadTask, ledger, i: int):
    return lambda: _guarded(task, ledger, i)


def place_of(task: ReadTask, inner: Datasource, i: int) -> tuple[str, int]:
    """(file or source, offset) that a crashed task's reject names."""
    places = getattr(inner, "places", None)
    if places and i < len(places):
        return places[i]
    files = task.metadata.input_files or []
    return (files[0] if files else f"read task {i}"), -1


def read_guarded(datasource: Datasource) -> tuple["ray.data.MaterializedDataset", pa.Table | None]:
    """Read ``datasource`` to a materialised dataset; the second value holds a
    reject row for each read task that crashed its worker (None when none did)."""
    guarded = _Guarded(datasource, _Ledger.remote(), set())
    crashed: list[int] = []
    try:
        for _ in range(MAX_ROUNDS):
            ds = _read(guarded)
            try:
                return ds.materialize(), _crash_rejects(guarded, crashed)
            except Exception:
                new = [i for i in ray.get(guarded.ledger.crashed.remote()) if i not in guarded.skip]
                if not new:
                    raise  # not a crash: the task's own error
                log.warning("read tasks %s crashed their workers; reading again without them", new)
                crashed += new
                guarded.skip |= set(new)
        raise RuntimeError(f"read tasks kept crashing after {MAX_ROUNDS} rounds: {crashed}")
    finally:
        ray.kill(guarded.ledger)


def _read(guarded: _Guarded):
    with warnings.catch_warnings():
        # ray_remote_args is deprecated in Ray 2.60, but it is the one way to
        # bound a read's retries
        warnings.simplefilter("ignore")
        kwargs = {"ray_remote_args": {"max_retries": READ_TASK_RETRIES}}
        if isinstance(guarded.inner, (RangeDatasource, LineFileDatasource)):  # as read_dataset does for them
            kwargs["override_num_blocks"] = max(len(guarded.get_read_tasks(-1)), 1)
        return read_dataset(guarded, **kwargs)


def _crash_rejects(guarded: _Guarded, crashed: list[int]) -> pa.Table | None:
    if not crashed:
        return None
    tasks = guarded.inner_tasks()
    places = [place_of(tasks[i], guarded.inner, i) for i in crashed]
    return raw_table(
        len(crashed), kind=REJECT,
        file=pa.array([p[0] for p in places], pa.string()),
        offset=pa.array([p[1] for p in places], pa.int64()),
        reason=f"read task crashed: its worker died {READ_TASK_RETRIES + 1} times reading this range "
               f"(a parser crash or out of memory); nothing of it is kept",
        raw="")
