"""QA evaluation: :func:`evaluate_qa` (a library call that writes nothing)
and the stage around it, ``kgscale eval qa`` (:func:`run_qa`).

- Multiple choice (``data``: JSONL files like ../shared/datasets/qa): accuracy
  by length-normalised log-likelihood (:mod:`kgscale.eval.choices`), without
  context and, when ``rationales`` names a directory with
  ``rationales.parquet`` (question_id, rationale, flagged, ...), with each
  question's rationale before it. Flagged rationales are not used. The
  rationale condition is reported beside the no-context accuracy on the
  *same* questions, so the two can be compared.
- Generation KGQA (``kgqa`` files, or 1-hop questions synthesised from
  ``kgqa_snapshot``): exact match and Hits@1 against every correct answer
  (:mod:`kgscale.eval.kgqa`).

Every model call runs in a Ray Data actor pool that loads the model once.
Writes ``metrics.json``, ``predictions.parquet`` (one row a question and
condition), ``kgqa_predictions.parquet``, ``rejects.jsonl`` and ``manifest.json``.
"""
from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from kgscale.config import stage_path
from kgscale.eval.choices import ChoiceScorer, build_prompt, predictions, read_mc_jsonl
from kgscale.eval.errors import EvalInputError
from kgscale.eval.kgqa import Generator, questions_from_snapshot, read_questions, score
from kgscale.eval.pool import PoolConfig, map_batches_args, threads
from kgscale.kg.qa_parts import DEFAULT_HOLDOUT, Part
from kgscale.kg.rejects import RejectLog
from kgscale.models.backbone import BackboneConfig, ModelSetting, with_absolute_path
from kgscale.output import StageOutput, Timer

RATIONALES = "rationales.parquet"
RATIONALE_COLUMNS = ("question_id", "rationale")


class QASettings(PoolConfig):
    """What QA evaluation scores and how (:func:`evaluate_qa`)."""

    # multiple-choice JSONL files, or folders of *.jsonl, or dataset:NAME from
    # the registry (an input: `kgscale run` stamps the files by their content)
    data: list[Path] = stage_path("input", [])
    # a directory with rationales.parquet (or the file itself), joined on question_id
    rationales: Path | None = stage_path("input", None)
    # generation KGQA: question files, and/or a snapshot to synthesise 1-hop questions from
    kgqa: list[Path] = []
    kgqa_snapshot: Path | None = stage_path("input", None)
    kgqa_split: Literal["test", "valid", "train"] = "test"
    # which part of each QA file to score (kgscale.kg.qa_parts: a fixed split by
    # question id; `heldout` when a run trained on the `train` part)
    part: Part = "all"
    holdout: float = Field(DEFAULT_HOLDOUT, gt=0.0, lt=1.0)
    # only the first N questions of each file (a sample of N synthesised ones); None: all
    limit: int | None = None
    # tokens of context + choice; longer contexts lose tokens from the left
    max_length: int = 512
    # questions per Ray Data batch; choices per forward pass (their contexts
    # in one pass before them, each context's KV cache shared by its choices;
    # 16 and 64 tie on two quiet cores, 64 was faster on one loaded core:
    # bench/qa_scoring.py), prompts per generation batch (KGQA)
    batch_size: int = 32
    micro_batch: int = 64
    # new tokens generated per KGQA answer (a key with "token" in it would read as a secret)
    answer_length: int = 24
    chat_template: bool = True
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    strict: bool = False

    @field_validator("data", mode="before")
    @classmethod
    def _registry_names(cls, value):
        """``dataset:commonsenseqa`` -> the registry's local file (fetched or mirrored)."""
        from kgscale.kg.registry import resolve_references

        return resolve_references(value)


class QAConfig(QASettings):
    """The ``kgscale eval qa`` stage: the model, the settings and the
    directory it writes (the ``qa:`` section of ``kgscale eval qa
    --config``, and ``eval.qa`` in a ``kgscale run`` config)."""

    out: Path = stage_path("output")
    overwrite: bool = False
    # the model scored: a name, a directory, a hub id or a mapping of model settings
    model: ModelSetting


def mc_files(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise EvalInputError(f"{p}: no *.jsonl files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise EvalInputError(f"QA data not found: {p}")
    return out


def dataset_name(path: Path) -> str:
    return path.name.split(".")[0]


def read_rationales(path: Path) -> tuple[dict[str, str], dict]:
    """question_id -> rationale (unflagged, non-empty), and counts."""
    file = path / RATIONALES if path.is_dir() else path
    if not file.is_file():
        raise EvalInputError(f"rationales not found: {file} (expected a directory holding {RATIONALES})")
    table = pq.read_table(file)
    missing = [c for c in RATIONALE_COLUMNS if c not in table.column_names]
    if missing:
        raise EvalInputError(f"{file}: missing column(s) {', '.join(missing)}")
    ids = [str(x) for x in table["question_id"].to_pylist()]
    texts = table["rationale"].to_pylist()
    flagged = table["flagged"].to_pylist() if "flagged" in table.column_names else [False] * len(ids)
    usable: dict[str, str] = {}
    counts = {"rows": len(ids), "flagged": 0, "empty": 0}
    for qid, text, flag in zip(ids, texts, flagged):
        if flag:
            counts["flagged"] += 1
        elif not (text or "").strip():
            counts["empty"] += 1
        else:
            usable.setdefault(qid, text)
    return usable, counts


def _accuracy(pred: np.ndarray, gold: np.ndarray) -> float | None:
    return float(np.mean(pred == gold)) if len(gold) else None


def bootstrap_interval(correct: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile-bootstrap interval of the accuracy (questions resampled
    with replacement, ``draws`` times, seeded)."""
    correct = np.asarray(correct, dtype=np.float64)
    if not len(correct):
        return None
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(draws, len(correct)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def _score_choices(rows: pa.Table, model: BackboneConfig, cfg: QAConfig) -> pa.Table:
    import ray

    n = rows.num_rows
    blocks = [rows.slice(i, cfg.batch_size) for i in range(0, n, cfg.batch_size)]
    ds = ray.data.from_arrow(blocks).map_batches(
        ChoiceScorer,
        fn_constructor_kwargs={"model": model.model_dump(), "max_length": cfg.max_length,
                               "micro_batch": cfg.micro_batch, "num_threads": threads(cfg), "dtype": cfg.dtype},
        batch_size=cfg.batch_size, batch_format="pyarrow", **map_batches_args(cfg))
    out = pa.concat_tables(list(ds.iter_batches(batch_size=None, batch_format="pyarrow")))
    return out.sort_by("row")


def _generate(rows: pa.Table, model: BackboneConfig, cfg: QAConfig) -> pa.Table:
    import ray

    blocks = [rows.slice(i, cfg.batch_size) for i in range(0, rows.num_rows, cfg.batch_size)]
    ds = ray.data.from_arrow(blocks).map_batches(
        Generator,
        fn_constructor_kwargs={"model": model.model_dump(), "max_new_tokens": cfg.answer_length,
                               "micro_batch": cfg.micro_batch, "num_threads": threads(cfg), "dtype": cfg.dtype,
                               "chat_template": cfg.chat_template},
        batch_size=cfg.batch_size, batch_format="pyarrow", **map_batches_args(cfg))
    return pa.concat_tables(list(ds.iter_batches(batch_size=None, batch_format="pyarrow"))).sort_by("row")


@dataclass
class QAEvaluation:
    """What :func:`evaluate_qa` measured: ``metrics`` (accuracy per dataset and
    condition with intervals, KGQA exact match and hits@1, rejected rows),
    the per-choice ``predictions`` and the KGQA generations (None where
    nothing of that kind was asked), and the ``rejects``."""

    metrics: dict
    predictions: pa.Table | None
    kgqa_predictions: pa.Table | None
    rejects: RejectLog
    files: list[Path]
    multiple_choice_questions: int
    kgqa_questions: int


def evaluate_qa(model: BackboneConfig | str, settings: QASettings, ray_cfg=None, timer: Timer | None = None) -> QAEvaluation:
    """QA accuracy of ``model`` as a library call: nothing is written.
    ``model`` is a backbone config or what its ``model`` field takes. Scoring
    runs on the Ray cluster (``ray_cfg``, or a local one)."""
    from kgscale.kg.snapshot import Snapshot
    from kgscale.models.inference import check_loadable
    from kgscale.ray_session import ensure_ray

    cfg, timer = settings, timer or Timer()
    model = BackboneConfig(model=str(model)) if isinstance(model, (str, Path)) else model
    model = with_absolute_path(model)  # the inference actors run in their own working directory
    if not cfg.data and not cfg.kgqa and cfg.kgqa_snapshot is None:
        raise EvalInputError("nothing to evaluate: give multiple-choice data (--data) and/or KGQA questions "
                             "(--kgqa FILE or --kgqa-snapshot DIR)")
    files = mc_files(cfg.data)
    kind = check_loadable(model)
    if files and kind != "causal":
        raise EvalInputError(f"multiple-choice scoring needs a causal LM; {model.model!r} is a {kind} model")
    rejects = RejectLog(strict=cfg.strict)
    rationales, rationale_counts = read_rationales(cfg.rationales) if cfg.rationales else ({}, None)

    with timer("read"):
        datasets = {dataset_name(f): (f, read_mc_jsonl(f, rejects, cfg.limit, part=cfg.part, holdout=cfg.holdout))
                    for f in files}
        kgqa_sets: dict[str, list[dict]] = {}
        for f in cfg.kgqa:
            if not f.is_file():
                raise EvalInputError(f"KGQA questions not found: {f}")
            kgqa_sets[dataset_name(f)] = read_questions(f, rejects, cfg.limit)
        if cfg.kgqa_snapshot is not None:
            snap = Snapshot(cfg.kgqa_snapshot)
            kgqa_sets[f"{snap.path.name}-1hop"] = questions_from_snapshot(snap, cfg.kgqa_split, cfg.limit)
    for name, (f, qs) in datasets.items():
        if not qs:
            raise EvalInputError(f"{f}: no valid questions (rejected rows: {rejects.summary()})")

    # one table of (dataset, question, condition) rows for one actor pool
    cols: dict[str, list] = {k: [] for k in ("dataset", "question_id", "question", "condition", "context", "choices",
                                             "answer")}
    joined = {}
    for name, (f, qs) in datasets.items():
        joined[name] = 0
        for q in qs:
            conditions = [("no_rationale", None)]
            if q.id in rationales:
                conditions.append(("with_rationale", rationales[q.id]))
                joined[name] += 1
            for cond, text in conditions:
                cols["dataset"].append(name)
                cols["question_id"].append(q.id)
                cols["question"].append(q.question)
                cols["condition"].append(cond)
                cols["context"].append(build_prompt(q.question, text))
                cols["choices"].append(q.choices)
                cols["answer"].append(q.answer)
    ensure_ray(ray_cfg)
    metrics: dict = {"model": model.model_dump(), "model_kind": kind, "multiple_choice": {}, "kgqa": {}}
    scored = None
    if cols["dataset"]:
        rows = pa.table({**cols, "row": pa.array(np.arange(len(cols["dataset"])), pa.int64())})
        with timer("score_choices"):
            scored = _score_choices(rows, model, cfg)
        by_mean, by_sum = predictions(scored["logprob"].to_pylist(), scored["ntokens"].to_pylist())
        scored = scored.append_column("predicted", pa.array(by_mean, pa.int64())).append_column(
            "predicted_by_sum", pa.array(by_sum, pa.int64()))
        gold = scored["answer"].to_numpy()
        ds_col = np.array(scored["dataset"].to_pylist(), dtype=object)
        cond = np.array(scored["condition"].to_pylist(), dtype=object)
        qid = np.array(scored["question_id"].to_pylist(), dtype=object)
        n_choices = np.array([len(c) for c in scored["choices"].to_pylist()])
        for name, (f, qs) in datasets.items():
            base = (ds_col == name) & (cond == "no_rationale")
            entry = {
                "file": str(f),
                "questions": int(base.sum()),
                "chance": float(np.mean(1.0 / n_choices[base])),
                "no_rationale": {"count": int(base.sum()), "accuracy": _accuracy(by_mean[base], gold[base]),
                                 "ci95": bootstrap_interval(by_mean[base] == gold[base]),
                                 "accuracy_by_sum": _accuracy(by_sum[base], gold[base])},
            }
            if cfg.rationales:
                withr = (ds_col == name) & (cond == "with_rationale")
                same = base & np.isin(qid, qid[withr])
                entry["rationales"] = {"joined": int(withr.sum()), "without_usable_rationale": int(base.sum() - withr.sum())}
                entry["with_rationale"] = {"count": int(withr.sum()), "accuracy": _accuracy(by_mean[withr], gold[withr]),
                                           "accuracy_by_sum": _accuracy(by_sum[withr], gold[withr])}
                entry["no_rationale_same_questions"] = {"count": int(same.sum()),
                                                        "accuracy": _accuracy(by_mean[same], gold[same]),
                                                        "accuracy_by_sum": _accuracy(by_sum[same], gold[same])}
            metrics["multiple_choice"][name] = entry
    if rationale_counts is not None:
        known = {q.id for _, qs in datasets.values() for q in qs}
        rationale_counts["matched_no_question"] = sum(1 for k in rationales if k not in known)
        metrics["rationales"] = {"path": str(cfg.rationales), **rationale_counts}

    kgqa_out = None
    kq: dict[str, list] = {k: [] for k in ("dataset", "question_id", "question", "answers")}
    for name, qs in kgqa_sets.items():
        for q in qs:
            kq["dataset"].append(name)
            kq["question_id"].append(q["id"])
            kq["question"].append(q["question"])
            kq["answers"].append(q["answers"])
    if kq["dataset"]:
        with timer("generate"):
            kgqa_out = _generate(pa.table({**kq, "row": pa.array(np.arange(len(kq["dataset"])), pa.int64())}), model, cfg)
        em, hit = zip(*(score(g, a) for g, a in zip(kgqa_out["generation"].to_pylist(), kgqa_out["answers"].to_pylist())))
        em, hit = np.array(em), np.array(hit)
        kgqa_out = kgqa_out.append_column("exact_match", pa.array(em)).append_column("hits@1", pa.array(hit))
        names = np.array(kgqa_out["dataset"].to_pylist(), dtype=object)
        for name in kgqa_sets:
            m = names == name
            metrics["kgqa"][name] = {"questions": int(m.sum()), "exact_match": float(em[m].mean()) if m.any() else None,
                                     "hits@1": float(hit[m].mean()) if m.any() else None}
    elif kgqa_sets:
        raise EvalInputError(f"no valid KGQA questions (rejected rows: {rejects.summary()})")

    metrics["rejected"] = rejects.summary()
    metrics["scoring"] = {
        "multiple_choice": "argmax over choices of the mean log-probability per choice token (accuracy); "
                           "accuracy_by_sum: argmax of the summed log-probability",
        "kgqa": "exact_match: normalised first answer equals a correct answer; hits@1: a correct answer occurs "
                "in the normalised generation",
    }
    metrics["timings_s"] = timer.total()
    return QAEvaluation(metrics=metrics, predictions=None if scored is None else scored.drop_columns(["row", "context"]),
                        kgqa_predictions=None if kgqa_out is None else kgqa_out.drop_columns(["row"]),
                        rejects=rejects, files=files,
                        multiple_choice_questions=sum(len(qs) for _, qs in datasets.values()),
                        kgqa_questions=len(kq["dataset"]))


def run_qa(cfg: QAConfig, ray_cfg=None) -> dict:
    """The stage: :func:`evaluate_qa`, then its results written to ``cfg.out``."""
    import json

    stage = StageOutput("eval-qa", cfg.out, cfg.overwrite)
    ev = evaluate_qa(cfg.model, cfg, ray_cfg, stage.timer)
    metrics = ev.metrics
    with stage.writing() as tmp:
        if ev.predictions is not None:
            pq.write_table(ev.predictions, tmp / "predictions.parquet")
        if ev.kgqa_predictions is not None:
            pq.write_table(ev.kgqa_predictions, tmp / "kgqa_predictions.parquet")
        metrics["timings_s"] = stage.timer.total()
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        manifest = stage.finish(
            ev.rejects,
            config={"qa": cfg.model_dump(mode="json", exclude={"model"}), "model": metrics["model"]},
            inputs={"data": [str(f) for f in ev.files], "rationales": str(cfg.rationales) if cfg.rationales else None,
                    "kgqa": [str(f) for f in cfg.kgqa], "kgqa_snapshot": str(cfg.kgqa_snapshot or "") or None},
            counts={"multiple_choice_questions": ev.multiple_choice_questions, "kgqa_questions": ev.kgqa_questions},
        )
    return manifest | {"metrics": metrics}


def summary(result: dict, out: Path) -> str:
    m = result["metrics"]
    parts = []
    for name, e in m["multiple_choice"].items():
        s = f"{name}: accuracy {e['no_rationale']['accuracy']:.4f} on {e['questions']:,} questions (chance {e['chance']:.3f})"
        if "with_rationale" in e and e["with_rationale"]["count"]:
            s += (f", with rationales {e['with_rationale']['accuracy']:.4f} vs {e['no_rationale_same_questions']['accuracy']:.4f}"
                  f" without on the same {e['with_rationale']['count']:,}")
        parts.append(s)
    for name, e in m["kgqa"].items():
        em = "n/a" if e["exact_match"] is None else f"{e['exact_match']:.4f}"
        h1 = "n/a" if e["hits@1"] is None else f"{e['hits@1']:.4f}"
        parts.append(f"{name} (generation): exact match {em}, Hits@1 {h1} on {e['questions']:,} questions")
    return (f"Evaluated {m['model']['model']}: " + "; ".join(parts) +
            f"; {m['rejected']['total']:,} rejected rows; {m['timings_s']['total']:.1f} s; metrics.json in {out}.")
