"""The ingest read: any source's datasource into a Ray Data dataset whose read
tasks run as parallel as the cluster's CPUs allow, from the first second.

Two Ray Data defaults (measured with Ray 2.60 on 2 CPUs) held the read tasks
back, so that two CPUs read an N-Triples file only 1.2x as fast as one:

- Ray Data asks for at least 200 blocks and, given fewer read tasks, splits
  each task's output to make up the number (``ReadRange->SplitBlocks`` in
  ``ds.stats()``). The line-file sources plan their ranges by the cluster's
  CPUs, so the dataset gets exactly as many blocks as ranges.
- Ray Data's resource allocator (``op_resource_reservation_enabled``) learns
  the cluster's size from its autoscaling coordinator, which answers
  asynchronously, and caches the answer for a second: for the first second of
  every execution it sees zero CPUs and lets one task run at a time (its
  liveness rule). After that it hands out tasks as its budget frees, through
  the driver's scheduling loop, whose ``ray.wait`` over all running tasks
  returns only when all are ready or after 0.1 s: each finished task left its
  CPU idle for 0.1-0.3 s. An ingest materialises every block it reads, so the
  allocator's object-store budget bounds nothing here; with it off, every read
  task is submitted at once and Ray's scheduler starts the next the moment a
  CPU frees. Over FB15k-237 as N-Triples (8 copies, 449 MB, 8 read tasks),
  2 CPUs against 1: 1.24-1.27x with the allocator; without it 1.48-1.83x,
  median 1.62x over six runs of bench/ntriples_ingest.py (two plain
  processes on the same machine: 1.82-1.91x).

The setting is made on the dataset's own context (a copy), never on the
process-wide ``DataContext``, so other pipelines keep Ray Data's defaults.
"""
from __future__ import annotations

import ray

from kgscale.kg.sources.line_datasource import LineFileDatasource, RangeDatasource


def read_dataset(datasource, **kwargs) -> ray.data.Dataset:
    """``ray.data.read_datasource(datasource, **kwargs)``, tuned for an ingest read (see above)."""
    if isinstance(datasource, (RangeDatasource, LineFileDatasource)):
        kwargs.setdefault("override_num_blocks", max(len(datasource.get_read_tasks(-1)), 1))
    ds = ray.data.read_datasource(datasource, **kwargs)
    ds.context.op_resource_reservation_enabled = False
    return ds
