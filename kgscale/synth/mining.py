"""The path-mining stage: ``map_batches`` over question batches, graph shared.

:func:`mine_table` is the stage as a plain function (a pyarrow batch of
questions in, the same rows with their paths out), testable without Ray.
:class:`PathMiner` runs it in an actor pool: each actor maps the
:class:`~kgscale.synth.shared_graph.SharedGraph` out of the object store
once, and keeps the compiled search warm across batches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from kgscale.config import StrictModel, stage_path
from kgscale.synth.paths import SearchConfig, find_paths_packed
from kgscale.synth.schema import MINED_FIELDS, PATH_TYPE
from kgscale.synth.shared_graph import SharedGraph
from kgscale.synth.verbalise import path_texts

OK = "ok"
NO_SOURCE = "no question entity"
NO_TARGET = "no answer entity"
BAD_ID = "entity id not in the graph"


def _id_lists(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column as (offsets, concatenated ids); null rows are empty."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    column = pc.fill_null(column, pa.scalar([], column.type))
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
    return offsets - offsets[0], values[offsets[0] : offsets[-1]]


def _drop_rows(ptr: np.ndarray, flat: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lists with the rows in ``drop`` (bool per row) emptied."""
    keep = np.repeat(~drop, np.diff(ptr))
    out = np.zeros_like(ptr)
    np.cumsum(np.where(drop, 0, np.diff(ptr)), out=out[1:])
    return out, flat[keep]


def mine_table(batch: pa.Table, shared: SharedGraph, cfg: SearchConfig) -> pa.Table:
    """Add the columns of :data:`~kgscale.synth.schema.MINED_FIELDS` to a batch of questions."""
    n = batch.num_rows
    graph = shared.graph
    sp, sf = _id_lists(batch["source_entities"])
    tp, tf = _id_lists(batch["target_entities"])
    # ids linked against another snapshot, or corrupted: recorded, not a crash
    bad = np.zeros(n, dtype=bool)
    for ptr, flat in ((sp, sf), (tp, tf)):
        wrong = (flat < 0) | (flat >= graph.num_entities)
        bad |= np.bincount(np.repeat(np.arange(n), np.diff(ptr))[wrong], minlength=n) > 0
    sp, sf = _drop_rows(sp, sf, bad)
    tp, tf = _drop_rows(tp, tf, bad)
    status = np.where(np.diff(sp) == 0, NO_SOURCE, np.where(np.diff(tp) == 0, NO_TARGET, OK)).astype(object)
    status[bad] = f"{BAD_ID}: ids must be in [0, {graph.num_entities})"
    pb = find_paths_packed(graph, shared.index, sp, sf, tp, tf, cfg)
    per_q = pb.per_question(n)
    cols = {
        "paths": _paths_column(pb, per_q, shared),
        "num_paths": pa.array(np.diff(per_q).astype(np.int32)),
        "search_status": pa.array(status.tolist(), pa.string()),
        "search_work": pa.array(pb.stats[:, 0]),
        "searched_from_answer": pa.array(pb.stats[:, 2].astype(bool)),
        "searched_without_caps": pa.array(pb.stats[:, 3].astype(bool)),
    }
    out = batch
    for name, typ in MINED_FIELDS:
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(pa.field(name, typ), cols[name].cast(typ))
    return out


def _paths_column(pb, per_q: np.ndarray, shared: SharedGraph) -> pa.ListArray:
    graph = shared.graph
    hops = pb.hops
    p, h = pb.edges.shape
    nodes = pb.nodes(graph, shared.index)
    step_ok = np.arange(h)[None, :] < hops[:, None]
    node_ok = np.arange(h + 1)[None, :] < (hops + 1)[:, None]
    edges = pb.edges[step_ok]
    ents = nodes[node_ok]
    rel = graph.relation[edges]
    inv = graph.inverse[edges]
    node_off = np.zeros(p + 1, np.int32)
    np.cumsum(hops + 1, out=node_off[1:])
    step_off = np.zeros(p + 1, np.int32)
    np.cumsum(hops, out=step_off[1:])
    rel_grid = np.zeros((p, h), np.int64)
    inv_grid = np.zeros((p, h), bool)
    if p:
        safe = np.where(pb.edges >= 0, pb.edges, 0)
        rel_grid = graph.relation[safe]
        inv_grid = graph.inverse[safe]
    texts = path_texts(nodes, rel_grid, inv_grid, hops, shared.entity_names.arrow(), shared.arrows.arrow())
    node_off_a, step_off_a = pa.array(node_off), pa.array(step_off)
    struct = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(node_off_a, pa.array(ents.astype(np.int32))),
            pa.ListArray.from_arrays(node_off_a, shared.entity_names.take(ents)),
            pa.ListArray.from_arrays(step_off_a, pa.array(rel.astype(np.int32))),
            pa.ListArray.from_arrays(step_off_a, shared.relation_texts.take(rel)),
            pa.ListArray.from_arrays(step_off_a, pa.array(inv.astype(bool))),
            pa.array(hops.astype(np.int8)),
            pa.array(pb.cost.astype(np.float32)),
            texts,
        ],
        fields=list(PATH_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(per_q.astype(np.int32)), struct)


class PathMiner:
    """Actor-pool stage: maps the shared graph once, mines every batch it is given."""

    def __init__(self, shared_ref: list, search: dict) -> None:
        from kgscale.synth.shared_graph import get_shared_graph

        # the ref comes wrapped in a list so Ray hands it over as a ref (no
        # eager copy into the constructor call); get maps it zero-copy
        self.shared = get_shared_graph(shared_ref[0])
        self.cfg = SearchConfig(**search)
        # load the compiled search now (numba reads its cache on the first
        # call), so that the first batch is not the slow one
        none = np.zeros(1, np.int64)
        find_paths_packed(self.shared.graph, self.shared.index, none, none[:0], none, none[:0], self.cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return mine_table(batch, self.shared, self.cfg)


# ---------------------------------------------------------------------------
# the stage: QUESTIONS + SNAPSHOT -> PATHS directory
# ---------------------------------------------------------------------------


class PathsConfig(StrictModel):
    # directory written by `kgscale questions` (or a questions .parquet file)
    questions: Path = stage_path("input")
    # the snapshot the questions were linked against
    snapshot: Path = stage_path("input")
    out: Path = stage_path("output")
    # triples the graph is built from; the default keeps valid/test triples
    # out of every mined path
    graph_splits: list[Literal["train", "valid", "test"]] = ["train"]
    # path-mining actors (each maps the shared graph once)
    workers: int = 2
    # questions a map_batches call mines
    batch_size: int = 64
    # the search: hops, caps, how many paths a question keeps
    search: SearchConfig = Field(default_factory=SearchConfig)
    strict: bool = False
    overwrite: bool = False


def questions_file(path: Path) -> Path:
    from kgscale.synth import SynthInputError
    from kgscale.synth.schema import QUESTIONS_FILE

    f = path / QUESTIONS_FILE if path.is_dir() else path
    if not f.is_file():
        raise SynthInputError(f"questions not found: {f} (run `kgscale questions ... --out {path}` first)")
    return f


def run_paths(cfg: PathsConfig, ray_cfg=None) -> dict:
    """Mine paths for every question; write PATHS/paths.parquet, rejects, manifest."""
    search = cfg.search
    import pyarrow.parquet as pq
    import ray

    from kgscale.kg.snapshot import Snapshot
    from kgscale.output import StageOutput
    from kgscale.ray_session import ensure_ray
    from kgscale.synth import SynthInputError
    from kgscale.synth.rejects import QuestionRejects
    from kgscale.synth.schema import PATHS_FILE
    from kgscale.synth.shared_graph import build_shared_graph, put_shared_graph

    stage = StageOutput("paths", cfg.out, cfg.overwrite)
    timer = stage.timer
    qfile = questions_file(cfg.questions)
    names = pq.read_schema(qfile).names
    missing = [c for c in ("question_id", "source_entities", "target_entities") if c not in names]
    if missing:
        raise SynthInputError(f"{qfile}: missing column(s) {', '.join(missing)}")
    if cfg.workers < 1 or cfg.batch_size < 1:
        raise SynthInputError("paths.workers and paths.batch_size must be >= 1")
    snapshot = Snapshot(cfg.snapshot)
    with timer("build_graph"):
        shared = build_shared_graph(snapshot, tuple(cfg.graph_splits), seed=search.seed)
    ensure_ray(ray_cfg)
    with timer("put_graph"):
        ref = put_shared_graph(shared)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # same input, same file
    # Read on the driver and hand Ray Data one block per batch: a read task
    # would need a CPU of its own beside the actor pool, and on a small node
    # (2 CPUs, 2 actors) it would wait for ever.
    questions = pq.read_table(qfile)
    blocks = [questions.slice(i, cfg.batch_size) for i in range(0, questions.num_rows, cfg.batch_size)]
    if not blocks:
        raise SynthInputError(f"{qfile} holds no questions")
    ds = ray.data.from_arrow(blocks).map_batches(
        PathMiner,
        fn_constructor_kwargs={"shared_ref": [ref], "search": search.model_dump()},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.workers),
    )
    rejects = QuestionRejects(strict=cfg.strict)
    stats = _Stats(search.max_hops)
    with stage.writing() as tmp:
        writer = None
        with timer("mine"):
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                ok = pc.equal(batch["search_status"], OK)
                for row in batch.filter(pc.invert(ok)).select(["question_id", "search_status"]).to_pylist():
                    rejects.add(str(qfile), f"question_id={row['question_id']}", row["search_status"])
                good = batch.filter(ok)
                stats.add(good)
                if writer is None:
                    writer = pq.ParquetWriter(tmp / PATHS_FILE, good.schema)
                writer.write_table(good)
        if writer is None:
            raise SynthInputError(f"{qfile} holds no questions")
        writer.close()
        manifest = stage.finish(
            rejects,
            inputs={"questions": str(qfile), "snapshot": str(cfg.snapshot)},
            config={"paths": cfg.model_dump(mode="json")},
            graph={
                "splits": list(shared.splits),
                "entities": shared.graph.num_entities,
                "edges": shared.graph.num_edges,
                "object_store_bytes": shared.nbytes(),
            },
            counts=stats.summary(),
        )
    del ref  # the graph leaves the object store once nothing refers to it
    return manifest


class _Stats:
    def __init__(self, max_hops: int) -> None:
        self.questions = 0
        self.with_path = 0
        self.paths = 0
        self.hops = np.zeros(max_hops + 1, np.int64)
        self.work: list[np.ndarray] = []
        self.by_split: dict[str, dict[str, int]] = {}
        self.from_answer = 0
        self.uncapped = 0

    def add(self, t: pa.Table) -> None:
        n = t.num_rows
        if not n:
            return
        num = t["num_paths"].to_numpy()
        self.questions += n
        self.with_path += int((num > 0).sum())
        self.paths += int(num.sum())
        flat = pc.list_flatten(t["paths"])
        hops = pc.struct_field(flat, "hops").to_numpy().astype(np.int64) if len(flat) else np.zeros(0, np.int64)
        self.hops += np.bincount(hops, minlength=len(self.hops))[: len(self.hops)]
        self.work.append(t["search_work"].to_numpy())
        self.from_answer += int(t["searched_from_answer"].to_numpy(zero_copy_only=False).sum())
        self.uncapped += int(t["searched_without_caps"].to_numpy(zero_copy_only=False).sum())
        splits = t["split"].to_pylist() if "split" in t.column_names else ["all"] * n
        for s, k in zip(splits, num):
            d = self.by_split.setdefault(str(s), {"questions": 0, "with_path": 0})
            d["questions"] += 1
            d["with_path"] += int(k > 0)

    def summary(self) -> dict:
        work = np.concatenate(self.work) if self.work else np.zeros(1)
        return {
            "questions_searched": self.questions,
            "with_path": self.with_path,
            "share_with_path": round(self.with_path / self.questions, 4) if self.questions else 0.0,
            "paths": self.paths,
            "paths_per_question": round(self.paths / self.questions, 3) if self.questions else 0.0,
            "paths_by_hops": {str(h): int(c) for h, c in enumerate(self.hops) if h > 0},
            "searched_from_answer_side": self.from_answer,
            "searched_again_without_caps": self.uncapped,
            "edges_examined": {"median": float(np.median(work)), "p99": float(np.percentile(work, 99)), "max": int(work.max())},
            "by_split": self.by_split,
        }


def summary(manifest: dict, out: Path) -> str:
    c = manifest["counts"]
    rej = manifest["rejected"]
    reasons = ", ".join(f"{n} {r}" for r, n in rej["by_reason"].items()) or "none"
    hops = ", ".join(f"{n:,} of {h} hop(s)" for h, n in c["paths_by_hops"].items())
    return (
        f"Mined paths into {out}: {c['questions_searched']:,} questions searched over the "
        f"{'+'.join(manifest['graph']['splits'])} graph ({manifest['graph']['edges']:,} edges, shared once through the object store); "
        f"{c['with_path']:,} ({100 * c['share_with_path']:.1f}%) have a path, {c['paths']:,} paths kept ({hops}); "
        f"{rej['total']:,} questions rejected ({reasons}); {manifest['timings_s']['total']:.1f} s."
    )
