"""The ingest read: a source's read tasks run as Ray tasks, side by side from
the first second; a task that kills its worker becomes a reject.

Every source is a Ray Data ``Datasource`` (its ``get_read_tasks`` plans the
ranges on the driver, each task opens its own file or connection), so
``ray.data.read_datasource(source.datasource())`` gives a Ray Dataset of its
raw rows. The ingest does not read through Ray Data's executor, though: it
keeps every block it reads (the passes over them are plain Ray tasks, see
:mod:`kgscale.kg.assemble`), so Ray Data's streaming and backpressure bound
nothing here, and its executor cost the ingest a fixed 2.6 s and 0.2 of its
parallel speed. Measured with Ray 2.60 on this project's 2-core machine
(docs/scale.md, "The read as Ray tasks"):

- A cluster's first Ray Data job starts two detached actors of Ray Data's own
  (its autoscaling coordinator, then its stats actor), one after the other,
  each in a new worker process, before the first read task starts: 2.6 s of
  a 1M-triple ingest's 9.6 s on a fresh Ray. Every ``kgscale ingest`` on a
  laptop starts a fresh Ray.
- Ray Data's resource allocator saw no CPUs for the first second of every
  execution, and its scheduling loop left a CPU idle for 0.1-0.3 s after
  each finished task (its ``ray.wait`` over the running tasks); with the
  allocator off, two CPUs read the 5M graph's N-Triples 1.62x as fast as one,
  and as Ray tasks 1.86x (two plain processes: 1.7-1.9x).

Here every read task is submitted at once (Ray's scheduler starts the next
the moment a CPU frees, on any node: ``SPREAD``, as Ray Data places reads),
each returns its rows as one Arrow table in the object store, and the driver
keeps the references in plan order.

A read task whose worker dies (a parser's stack overflow, the kernel's OOM
killer) is retried ``READ_TASK_RETRIES`` times by Ray and then becomes a reject
for its file or range (``read task crashed``), so ``--strict`` names it and the
counts still add up; the other tasks' rows are kept. A task that fails with an
ordinary exception is not retried: its error is raised (a
:class:`~kgscale.errors.UserError`, such as an endpoint that refuses the query,
as itself) and the tasks still running are cancelled, once the others have had
``CANCEL_GRACE_S`` to end by themselves (see :func:`_stop`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import pyarrow as pa
import ray
from tqdm import tqdm

from kgscale.errors import UserError
from kgscale.kg.schema import RAW_SCHEMA, REJECT, raw_table

if TYPE_CHECKING:  # not at run time: see _run_read_task
    from ray.data import Datasource, ReadTask

READ_TASK_RETRIES = 1
# how a worker's death shows once Ray has spent the task's retries
_CRASHES = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError)
# after a read fails, how long the other tasks get to end by themselves before
# those still running are cancelled (see _stop)
CANCEL_GRACE_S = 2.0


@ray.remote(num_cpus=1, max_retries=READ_TASK_RETRIES, scheduling_strategy="SPREAD")
def _run_read_task(read: Callable[[], Iterable[pa.Table]], split: Callable[[pa.Table], tuple] | None) -> tuple:
    """(row count, the task's rows as one table, or ``split``'s parts of it).
    The count is the small object the driver waits on, so the rows are never
    fetched to learn the outcome.

    It gets the ReadTask's function, not the ReadTask: a worker imports the
    module of each thing it unpickles, and Ray Data's costs a fresh worker
    0.6 s, which this module does not import at run time either
    (its datasources' read functions live apart from them, in
    :mod:`kgscale.kg.sources.range_read` and :mod:`kgscale.kg.rdf.formats`)."""
    blocks = list(read())
    if not blocks:
        table = RAW_SCHEMA.empty_table()
    elif len(blocks) == 1:
        table = blocks[0]
    else:  # zero-copy: the blocks become the table's chunks
        table = pa.concat_tables(blocks, promote_options="permissive")
    return (table.num_rows, *(split(table) if split is not None else (table,)))


def read_blocks(datasource: Datasource, split: Callable[[pa.Table], tuple] | None = None,
                parts: int = 1) -> tuple[list, pa.Table | None]:
    """Run ``datasource``'s read tasks; return, in plan order, a reference to
    each task's table (with ``split``: a tuple of references to the ``parts``
    objects ``split(table)`` returns, cut in the task while its rows are at
    hand), and a reject row for each task that crashed its worker (None when
    none did)."""
    tasks = datasource.get_read_tasks(-1)
    run = _run_read_task.options(num_returns=1 + (parts if split is not None else 1))
    refs = [run.remote(t.read_fn, split) for t in tasks]
    crashed: list[int] = []
    pending = {r[0]: i for i, r in enumerate(refs)}
    # Ray's progress-bar setting (RayConfig.progress_bars) switches it off; tqdm, off where stderr is no terminal
    from ray.data import DataContext

    bar = tqdm(total=len(tasks), desc="read", unit="task", dynamic_ncols=True,
               disable=None if DataContext.get_current().enable_progress_bars else True)
    try:
        while pending:
            # every task that is done, at least every second (one pass over the pending, not one a task)
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0)
            for counted in done:
                i = pending.pop(counted)
                try:
                    ray.get(counted)
                except _CRASHES:
                    crashed.append(i)
                    _handled(refs[i])
                bar.update()
    except BaseException as exc:
        _stop(list(pending))
        for r in refs:
            _handled(r)
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, UserError):
            raise exc.cause from None  # its message is for the user; the worker's traceback is not
        raise
    finally:
        bar.close()
    lost = set(crashed)
    kept = [(r[1:] if split is not None else r[1]) for i, r in enumerate(refs) if i not in lost]
    return kept, _crash_rejects(tasks, datasource, sorted(crashed))


def _stop(pending: list) -> None:
    """Stop the read tasks still running after a read failed.

    Ray 2.60's ``ray.cancel`` kills the driver's own process when it lands
    while the driver takes in that task's result (its core worker fails the
    check "Tried to complete task that was not pending" and exits): a read
    whose two tasks failed at once did so once in 60-100 tries, and once in
    CI. Tasks that fail together end together, so the others get
    ``CANCEL_GRACE_S`` to end by themselves, and only those still running
    after it are cancelled. With force: a plain cancel does not stop a task
    blocked in a call (a read waiting on a server), and its CPU would stay
    taken."""
    if not pending:
        return
    _, running = ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
    for ref in running:
        ray.cancel(ref, force=True)


def _handled(task_refs: list) -> None:
    """Collect the error a failed or cancelled task left in each of its
    objects, so that Ray does not log it again as an unhandled error when they
    are dropped; a finished task's rows are not fetched."""
    for ref in task_refs:
        try:
            ray.get(ref, timeout=10)
            return  # the task finished: its other objects hold rows
        except Exception:
            pass


def place_of(task: ReadTask, datasource: Datasource, i: int) -> tuple[str, int]:
    """(file or source, offset) that a crashed task's reject names."""
    places = getattr(datasource, "places", None)
    if places and i < len(places):
        return places[i]
    files = task.metadata.input_files or []
    return (files[0] if files else f"read task {i}"), -1


def _crash_rejects(tasks: list[ReadTask], datasource: Datasource, crashed: list[int]) -> pa.Table | None:
    if not crashed:
        return None
    places = [place_of(tasks[i], datasource, i) for i in crashed]
    return raw_table(
        len(crashed), kind=REJECT,
        file=pa.array([p[0] for p in places], pa.string()),
        offset=pa.array([p[1] for p in places], pa.int64()),
        reason=f"read task crashed: its worker died {READ_TASK_RETRIES + 1} times reading this range "
               f"(a parser crash or out of memory); nothing of it is kept",
        raw="")
