"""The tokenised training dataset is the same whether the driver tokenises a
small table itself or Ray Data tasks tokenise a large one."""
from __future__ import annotations

from kgscale.kg.snapshot import Snapshot
from kgscale.samples import pipeline
from kgscale.samples.kalm import kalm_samples
from kgscale.samples.tokenize import KaLMTokenize
from tests.training_fixtures import tiny_snapshot
from tests.unit.training.test_tokenize_collate import TINY


def _rows(ds) -> list[dict]:
    return sorted(ds.take_all(), key=lambda r: r["row"])


def test_driver_and_ray_tasks_tokenise_identically(tmp_path, monkeypatch):
    table = kalm_samples(Snapshot(tiny_snapshot(tmp_path / "snap")), "train", inverse=True)
    table = table.append_column("row", __import__("pyarrow").array(range(table.num_rows)))
    kwargs = {"backbone": TINY, "special_tokens": (), "max_length": 12, "max_entity_length": 3,
              "lm_prompt": "Q: {query} ->", "views": ("query", "key", "lm"), "append_eos": True}
    in_driver, cut_in_driver = pipeline.tokenized_dataset(table, KaLMTokenize, kwargs, 2, batch_size=4)
    monkeypatch.setattr(pipeline, "IN_PROCESS_ROWS", 0)
    by_tasks, cut_by_tasks = pipeline.tokenized_dataset(table, KaLMTokenize, kwargs, 2, batch_size=4)
    a, b = _rows(in_driver), _rows(by_tasks)
    assert len(a) == table.num_rows and cut_in_driver == cut_by_tasks > 0  # max_length 12 cuts some
    for x, y in zip(a, b):
        assert set(x) == set(y)
        assert all(list(x[k]) == list(y[k]) if hasattr(x[k], "__len__") else x[k] == y[k] for k in x)
