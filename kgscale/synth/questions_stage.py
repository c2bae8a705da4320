"""The questions stage: QA JSONL linked to a snapshot, or k-hop questions
synthesised from it -> QUESTIONS/questions.parquet (+ rejects, manifest).

Linking runs as Ray Data ``map_batches`` over batches of lines, in an actor
pool that holds the name index (built once on the driver, put in the object
store once). KG synthesis runs on the driver with numpy: a few thousand
walks take seconds.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pydantic import Field

from kgscale.config import StrictModel, stage_path
from kgscale.kg.graph import CSRGraph
from kgscale.kg.qa_parts import DEFAULT_HOLDOUT, Part, in_part
from kgscale.kg.snapshot import Snapshot
from kgscale.output import StageOutput, file_sha256
from kgscale.synth import SynthInputError
from kgscale.synth.linking import NameIndex, wordnet_aliases, wordnet_exceptions
from kgscale.synth.questions_kg import KGQuestionsConfig, synthesise
from kgscale.synth.questions_qa import OK, LinkConfig, QALinker
from kgscale.synth.rejects import QuestionRejects
from kgscale.synth.schema import QUESTION_FIELDS, QUESTIONS_FILE

KG_SOURCE = "kg"


class QuestionsConfig(StrictModel):
    # a multiple-choice QA JSONL file, or "kg" to synthesise k-hop questions from the snapshot
    source: str
    snapshot: Path = stage_path("input")
    out: Path = stage_path("output")
    # split label of QA rows; default: from the file name ("x.validation.jsonl" -> "validation")
    split: str | None = None
    # which part of a QA file to keep (kgscale.kg.qa_parts: a fixed split by
    # question id, so a run can train on one part and score the other)
    part: Part = "all"
    holdout: float = Field(DEFAULT_HOLDOUT, gt=0.0, lt=1.0)
    # linking actors, and lines a map_batches call links
    workers: int = 2
    batch_size: int = 256
    # how QA text is linked to entity names (a QA file as source)
    link: LinkConfig = Field(default_factory=LinkConfig)
    # how k-hop questions are drawn from the snapshot (source `kg`)
    kg: KGQuestionsConfig = Field(default_factory=KGQuestionsConfig)
    strict: bool = False
    overwrite: bool = False


def build_name_index(snapshot: Snapshot, link: LinkConfig) -> NameIndex:
    ents = snapshot.entities.sort_by("id")
    names = [n or "" for n in ents["name"].to_pylist()]
    degree = CSRGraph.from_snapshot(snapshot, ("train", "valid", "test")).degree()
    aliases = exceptions = None
    if link.wordnet_dir:
        wn = Path(link.wordnet_dir)
        if not (wn / "data.noun").is_file():
            raise SynthInputError(f"questions.link.wordnet_dir: no WordNet data.noun in {wn} (apt-get install wordnet-base)")
        aliases = wordnet_aliases(wn, ents["key"].to_pylist())
        exceptions = wordnet_exceptions(wn)
    return NameIndex.build(names, degree, aliases, exceptions, max_ngram=link.max_ngram)


def run_questions(cfg: QuestionsConfig, ray_cfg=None) -> dict:
    link, kg = cfg.link, cfg.kg
    stage = StageOutput("questions", cfg.out, cfg.overwrite)
    timer = stage.timer
    snapshot = Snapshot(cfg.snapshot)
    rejects = QuestionRejects(strict=cfg.strict)
    if cfg.source == KG_SOURCE:
        with timer("synthesise"):
            table, synth_stats = synthesise(snapshot, kg)
        inputs = {"snapshot": str(cfg.snapshot)}
        extra = {"synthesis": synth_stats, "config": {"questions": cfg.model_dump(mode="json", exclude={"link"})}}
    else:
        path = Path(cfg.source)
        if not path.is_file():
            raise SynthInputError(f"questions.source: no such file: {path} (a QA .jsonl file, or `kg`)")
        split = cfg.split or (path.name.split(".")[-2] if path.name.count(".") >= 2 else "qa")
        with timer("index"):
            index = build_name_index(snapshot, link)
        with timer("link"):
            table, link_stats = _link_file(path, index, cfg, link, rejects, split, ray_cfg)
        if cfg.part != "all":
            keep = [in_part(q, cfg.part, cfg.holdout) for q in table["question_id"].to_pylist()]
            link_stats["part"] = {"kept": cfg.part, "holdout": cfg.holdout, "questions_in_part": int(sum(keep)),
                                  "questions_in_other_part": int(len(keep) - sum(keep))}
            table = table.filter(pa.array(keep, pa.bool_()))
        inputs = {"source": str(path), "bytes": os.path.getsize(path), "sha256": file_sha256(path), "snapshot": str(cfg.snapshot)}
        extra = {"linking": {**link_stats, "index_names": len(index.names)},
                 "config": {"questions": cfg.model_dump(mode="json", exclude={"kg"})}}
    with stage.writing() as tmp:
        pq.write_table(table, tmp / QUESTIONS_FILE)
        by_split = dict(zip(*_value_counts(table["split"]))) if table.num_rows else {}
        return stage.finish(rejects, inputs=inputs, counts={"questions": table.num_rows, "by_split": by_split},
                            **extra)


def _value_counts(column) -> tuple[list, list]:
    vc = column.value_counts()
    return [v.as_py() for v in vc.field("values")], [c.as_py() for c in vc.field("counts")]


def _link_file(path: Path, index: NameIndex, cfg: QuestionsConfig, link: LinkConfig, rejects: QuestionRejects,
               split: str, ray_cfg) -> tuple[pa.Table, dict]:
    import ray

    from kgscale.ray_session import ensure_ray

    lines, raws = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, raw in enumerate(f, 1):
            if raw.strip():
                lines.append(no)
                raws.append(raw.rstrip("\n"))
    if not lines:
        raise SynthInputError(f"{path} holds no questions")
    raw_by_line = dict(zip(lines, raws))
    ensure_ray(ray_cfg)
    ref = ray.put(index)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    table = pa.table({"line": pa.array(lines, pa.int64()), "raw": pa.array(raws, pa.string())})
    # one block per batch, so every linking actor gets work
    ds = ray.data.from_arrow([table.slice(i, cfg.batch_size) for i in range(0, table.num_rows, cfg.batch_size)])
    ds = ds.map_batches(
        QALinker,
        fn_constructor_kwargs={"index_ref": [ref], "cfg": link.model_dump(), "id_prefix": path.name.split(".")[0]},
        batch_size=cfg.batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=cfg.workers),
    )
    linked = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
    parsed = linked.filter(pc.is_valid(linked["question"]))
    stats = _link_stats(parsed)
    stats["rows"] = linked.num_rows
    stats["rows_valid"] = parsed.num_rows
    for row in linked.filter(pc.not_equal(linked["status"], OK)).select(["line", "status"]).to_pylist():
        rejects.add(str(path), f"line {row['line']}", row["status"], raw_by_line[row["line"]][:2000])
    good = linked.filter(pc.equal(linked["status"], OK))
    n = good.num_rows
    good = good.append_column("split", pa.array([split] * n, pa.string()))
    good = good.append_column("origin", pa.array([f"qa:{path.name}"] * n, pa.string()))
    names = [f for f, _ in QUESTION_FIELDS] + ["choice_entities", "answer_index", "mentions", "ambiguous_mentions", "line"]
    return good.select(names), stats


def _link_stats(parsed: pa.Table) -> dict:
    """Link rates over the rows that parsed (rows that did not are rejects of their own)."""
    n = parsed.num_rows
    if n == 0:
        return {"questions": 0}
    src = pc.list_value_length(parsed["source_entities"]).to_numpy(zero_copy_only=False) > 0
    tgt = pc.list_value_length(parsed["target_entities"]).to_numpy(zero_copy_only=False) > 0
    per_choice = pc.list_flatten(parsed["choice_entities"])
    choice_linked = pc.list_value_length(per_choice).to_numpy(zero_copy_only=False) > 0
    mentions = parsed["mentions"].to_numpy()
    ambiguous = parsed["ambiguous_mentions"].to_numpy()
    return {
        "questions": n,
        "question_linked": round(float(src.mean()), 4),
        "answer_linked": round(float(tgt.mean()), 4),
        "both_linked": round(float((src & tgt).mean()), 4),
        "choices_linked": round(float(choice_linked.mean()), 4) if len(choice_linked) else 0.0,
        "mentions_per_question": round(float(mentions.mean()), 3),
        "ambiguous_mention_share": round(float(ambiguous.sum() / max(mentions.sum(), 1)), 4),
    }


def summary(manifest: dict, out: Path) -> str:
    c, rej = manifest["counts"], manifest["rejected"]
    reasons = ", ".join(f"{n} {r}" for r, n in rej["by_reason"].items()) or "none"
    splits = ", ".join(f"{n:,} {s}" for s, n in sorted(c["by_split"].items()))
    if "linking" in manifest:
        lk = manifest["linking"]
        head = (f"Linked {manifest['inputs']['source']} to the snapshot: of {lk['questions']:,} valid questions "
                f"{100 * lk['question_linked']:.1f}% have a question entity, {100 * lk['answer_linked']:.1f}% a linked answer, "
                f"{100 * lk['both_linked']:.1f}% both ({100 * lk['choices_linked']:.1f}% of all choices linked); ")
    else:
        head = f"Synthesised {manifest['config']['questions']['kg']['hops']}-hop questions from the snapshot; "
    return (f"{head}{c['questions']:,} questions written to {out} ({splits or 'none'}); "
            f"{rej['total']:,} rejected ({reasons}); {manifest['timings_s']['total']:.1f} s.")
