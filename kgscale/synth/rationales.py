"""The rationales stage: PATHS -> RATIONALES/rationales.parquet.

Every question with at least one path goes to a teacher (an actor pool over
Ray Data ``map_batches``; :func:`teach_table` is the plain function each
actor runs on its batch). A question without a path, and a teacher call that
still fails after its retries, are recorded in ``rejects.jsonl`` with the
reason. A rationale that names none of its paths' entities is kept but
``flagged``.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from kgscale.config import StrictModel, stage_path
from kgscale.synth import SynthInputError
from kgscale.synth.schema import PATHS_FILE, RATIONALE_FIELDS, RATIONALES_FILE, RATIONALES_SCHEMA
from kgscale.synth.teacher import TeacherConfig, build_messages, make_teacher, mentions_path_entity, prompt_sha256

TAUGHT_SCHEMA = pa.schema(RATIONALE_FIELDS + [("error", pa.string()), ("attempts", pa.int32())])
INPUT_COLUMNS = ("question_id", "question", "answer", "paths")


class RationalesConfig(StrictModel):
    # directory written by `kgscale paths`
    paths: Path = stage_path("input")
    out: Path = stage_path("output")
    # teach only the first N questions with paths (smoke runs); None: all
    limit: int | None = Field(None, ge=1)
    # who writes the rationales: a local model, an OpenAI-compatible endpoint, or the verbaliser
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    strict: bool = False
    overwrite: bool = False


def teach_table(batch: pa.Table, teacher, cfg: TeacherConfig) -> pa.Table:
    """Questions with paths in, one :data:`TAUGHT_SCHEMA` row each out."""
    rows = batch.to_pylist()
    for r in rows:
        # two entities may share a name, so distinct paths can read the same: show each text once
        seen: set[str] = set()
        r["paths"] = [p for p in r["paths"] if not (p["text"] in seen or seen.add(p["text"]))]
    messages = [build_messages(r, cfg) for r in rows]
    results = teacher.teach(messages, rows)
    tid = cfg.teacher_id()
    out = []
    for r, m, res in zip(rows, messages, results):
        shown = r["paths"][: cfg.max_paths]
        out.append({
            "question_id": r["question_id"],
            "question": r["question"],
            "answer": r["answer"],
            "choices": r.get("choices") or [],
            "rationale": res.rationale,
            "teacher": tid,
            "prompt_sha256": prompt_sha256(m),
            "flagged": (not mentions_path_entity(res.rationale, shown, r["answer"])) if res.rationale is not None else None,
            "paths": [p["text"] for p in shown],
            "split": r.get("split"),
            "origin": r.get("origin"),
            "error": res.error,
            "attempts": res.attempts,
        })
    return pa.Table.from_pylist(out, schema=TAUGHT_SCHEMA)


class TeacherActor:
    """Actor-pool stage: loads the teacher (a model, or an HTTP session) once."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = TeacherConfig(**cfg)
        self.teacher = make_teacher(self.cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return teach_table(batch, self.teacher, self.cfg)


def run_rationales(cfg: RationalesConfig, ray_cfg=None) -> dict:
    import ray

    from kgscale.output import StageOutput
    from kgscale.ray_session import ensure_ray
    from kgscale.synth.rejects import QuestionRejects

    teacher = cfg.teacher
    stage = StageOutput("rationales", cfg.out, cfg.overwrite)
    pfile = cfg.paths / PATHS_FILE if cfg.paths.is_dir() else cfg.paths
    if not pfile.is_file():
        raise SynthInputError(f"paths not found: {pfile} (run `kgscale paths ... --out {cfg.paths}` first)")
    table = pq.read_table(pfile)
    missing = [c for c in INPUT_COLUMNS + ("num_paths",) if c not in table.column_names]
    if missing:
        raise SynthInputError(f"{pfile}: missing column(s) {', '.join(missing)}")
    if teacher.kind == "hf":
        # a model that cannot be found is a configuration error, said here
        # rather than as an actor crash
        from kgscale.models.backbone import BackboneConfig, ModelLoadError, resolve, with_absolute_path

        backbone = with_absolute_path(BackboneConfig(model=teacher.model, kind="causal", seed=teacher.seed))
        try:
            resolve(backbone)
        except ModelLoadError as exc:
            raise SynthInputError(f"teacher.model: {exc}") from None
        # the teacher actors run in their own working directory
        teacher = teacher.model_copy(update={"model": backbone.model})
    rejects = QuestionRejects(strict=cfg.strict)
    no_path = table.filter(pc.equal(table["num_paths"], 0))
    for qid in no_path["question_id"].to_pylist():
        rejects.add(str(pfile), f"question_id={qid}", "no path between the question and the answer entities")
    todo = table.filter(pc.greater(table["num_paths"], 0))
    if cfg.limit is not None:
        todo = todo.slice(0, cfg.limit)
    keep = [c for c in INPUT_COLUMNS + ("choices", "split", "origin") if c in todo.column_names]
    todo = todo.select(keep)
    taught = []
    if todo.num_rows:
        ensure_ray(ray_cfg)
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        # blocks made on the driver: a read task beside a full actor pool could wait for ever on a small node
        blocks = [todo.slice(i, teacher.batch_size) for i in range(0, todo.num_rows, teacher.batch_size)]
        ds = ray.data.from_arrow(blocks).map_batches(
            TeacherActor,
            fn_constructor_kwargs={"cfg": teacher.model_dump()},
            batch_size=teacher.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=teacher.workers),
            num_cpus=teacher.cpus_per_worker,
        )
        with stage.timer("teach"):
            taught = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    result = pa.concat_tables(taught) if taught else TAUGHT_SCHEMA.empty_table()
    failed = result.filter(pc.is_valid(result["error"]))
    for row in failed.select(["question_id", "error", "attempts"]).to_pylist():
        rejects.add(teacher.teacher_id(), f"question_id={row['question_id']}", row["error"])
    good = result.filter(pc.is_null(result["error"]))
    attempts = result["attempts"].to_numpy() if result.num_rows else []
    with stage.writing() as tmp:
        pq.write_table(good.select(RATIONALES_SCHEMA.names).cast(RATIONALES_SCHEMA), tmp / RATIONALES_FILE)
        flagged = int(pc.sum(good["flagged"]).as_py() or 0) if good.num_rows else 0
        return stage.finish(
            rejects,
            inputs={"paths": str(pfile)},
            teacher=teacher.teacher_id(),
            config={"rationales": cfg.model_dump(mode="json", exclude={"teacher"}), "teacher": teacher.model_dump()},
            counts={
                "questions": table.num_rows,
                "without_path": no_path.num_rows,
                "sent_to_teacher": todo.num_rows,
                "rationales": good.num_rows,
                "flagged": flagged,
                "flagged_share": round(flagged / good.num_rows, 4) if good.num_rows else 0.0,
                "teacher_failures": failed.num_rows,
                "teacher_retries": int(sum(attempts) - len(attempts)),
            },
        )


def summary(manifest: dict, out: Path) -> str:
    c, rej = manifest["counts"], manifest["rejected"]
    reasons = ", ".join(f"{n} {r}" for r, n in rej["by_reason"].items()) or "none"
    teach_s = manifest["timings_s"].get("teach", 0.0)
    return (
        f"Wrote {c['rationales']:,} rationales from {manifest['teacher']} to {out} "
        f"({c['flagged']:,} flagged for naming none of their paths' entities); of {c['questions']:,} questions "
        f"{c['without_path']:,} had no path and {c['teacher_failures']:,} teacher calls failed after "
        f"{c['teacher_retries']:,} retries in all; {rej['total']:,} rejected ({reasons}); "
        f"teaching took {teach_s:.1f} s, {manifest['timings_s']['total']:.1f} s in all."
    )
