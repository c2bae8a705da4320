"""Samples for a training run: text rows from the snapshot (or rationales),
then tokenised by a Ray Data pipeline, the one place these stages are chained.

The tokenised dataset is materialised in the object store before the
trainer starts: its size decides whether one global batch fits, which must be
known before any worker starts; the training workers then hold every CPU
they reserved for compute instead of sharing them with tokeniser tasks; and
every epoch re-reads the blocks instead of re-tokenising. A KG's samples are
small next to that (WN18RR, both directions, three sequences a row: ~60 MB).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from kgscale.samples.rejects import SampleRejects


def sample_table(cfg, snapshot, rejects: SampleRejects) -> pa.Table:
    """Text rows for ``cfg.objective`` (a :class:`TrainConfig`; its method's
    builder, :mod:`kgscale.train.methods`), shuffled with ``data.seed`` and cut
    at ``data.max_samples``."""
    from kgscale.train.methods import method

    d = cfg.data
    table = method(cfg.objective.name).samples(cfg, snapshot, rejects)
    order = np.random.default_rng(d.seed).permutation(table.num_rows)
    if d.max_samples is not None:
        order = order[: d.max_samples]
    table = table.take(pa.array(order))
    return table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def tokenizer_stage(cfg, special_tokens: tuple[str, ...], decoder_start_token_id: int | None, kind: str = "causal"):
    """(callable class, constructor kwargs) of the tokeniser for ``cfg``
    (``kind``: the backbone's, which decides whether views end with EOS)."""
    from kgscale.train.methods import method

    base = {"backbone": cfg.model.model_dump(include={"model", "gguf_file", "kind", "seed"}, mode="json"),
            "special_tokens": tuple(special_tokens), "max_length": cfg.data.max_length}
    return method(cfg.objective.name).tokenizer(cfg, base, decoder_start_token_id, kind)


_STAGES: dict = {}


def _run_stage(batch, stage, kwargs: dict):
    """Run ``stage(**kwargs)`` on a batch, building it once per worker process.

    The stages are callable classes (the tokenizer is their state), but they
    run as Ray Data *tasks* with this per-process cache rather than in an
    actor pool: Ray keeps task workers warm, so a run does not wait for an
    actor pool to start (about 5 s here, every run) and the tokenizer is still
    loaded once per process."""
    key = (stage.__qualname__, repr(sorted(kwargs.items())))
    if key not in _STAGES:
        _STAGES[key] = stage(**kwargs)
    out = _STAGES[key](batch)
    # the sample's row in the sample table: which worker takes it (kgscale.train.order)
    return out.append_column("row", pa.array(np.asarray(batch["row"], dtype=np.int64)))


def tokenized_dataset(table: pa.Table, stage, kwargs: dict, parallelism: int = 1, batch_size: int = 256):
    """The materialised Ray Dataset of token ids, and its count of truncated rows."""
    import pyarrow.compute as pc
    import ray

    n = table.num_rows
    # several blocks, so that several tasks can tokenise at once
    rows_per_block = max(batch_size, -(-n // (4 * parallelism)))
    blocks = [table.slice(i, rows_per_block) for i in range(0, n, rows_per_block)] or [table]
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(_run_stage, fn_kwargs={"stage": stage, "kwargs": kwargs}, batch_size=batch_size,
                        batch_format="numpy", compute=ray.data.TaskPoolStrategy(size=parallelism))
    ds = ds.materialize()
    # read the flags from the materialised blocks (no second Ray Data job)
    truncated = sum(int(pc.sum(ray.get(ref)["truncated"]).as_py() or 0) for ref in ds.to_arrow_refs())
    return ds, truncated
