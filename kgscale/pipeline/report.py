"""The end of ``kgscale run``: a summary table and each training run's curves as PNG."""
from __future__ import annotations

import json
from pathlib import Path

from kgscale.pipeline.stages import StageResult


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def headline(result: StageResult) -> str:
    """The few numbers of a stage a person wants first."""
    m, stage = result.manifest, result.name.split("/")[0]
    if stage == "eval" and (Path(result.out) / "metrics.json").is_file():
        m = json.loads((Path(result.out) / "metrics.json").read_text())
    if stage == "ingest":
        c = m.get("counts", {})
        t = c.get("triples", {})
        return (f"{_fmt(c.get('entities'))} entities, {_fmt(c.get('relations'))} relations, "
                f"{'/'.join(_fmt(t.get(s, 0)) for s in ('train', 'valid', 'test'))} triples, "
                f"{_fmt(_get(m, 'rejected', 'total', default=0))} rejected")
    if stage == "questions":
        link = m.get("linking") or {}
        rate = link.get("linked_question_and_answer_rate", link.get("link_rate"))
        text = f"{_fmt(_get(m, 'counts', 'questions'))} questions"
        return text + (f", linked (question and answer) {rate:.1%}" if isinstance(rate, float) else "")
    if stage == "paths":
        c = m.get("counts", {})
        return ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in c.items() if not isinstance(v, dict))
    if stage == "rationales":
        c = m.get("counts", {})
        return ", ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in c.items() if not isinstance(v, dict))
    if stage == "train":
        rows = _metrics(result.out)
        if not rows:
            return "no metrics"
        first, last = rows[0], rows[-1]
        tps = last.get("tokens_per_s")
        return (f"{last.get('step')} steps, loss {_fmt(first.get('loss'))} -> {_fmt(last.get('loss'))}"
                + (f", {tps:,.0f} tokens/s" if isinstance(tps, (int, float)) else ""))
    if stage == "eval" and result.name.startswith("eval/kgc"):
        both = _get(m, "metrics", "both") or _get(m, "both") or {}
        keys = [k for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10") if k in both]
        return ", ".join(f"{k.upper() if k in ('mrr', 'mr') else k} {_fmt(both[k])}" for k in keys) or "see metrics.json"
    if stage == "eval":
        acc = []
        mc = _get(m, "metrics", "multiple_choice") or _get(m, "multiple_choice") or {}
        for name, d in mc.items():
            if not isinstance(d, dict):
                continue
            text = f"{name}: accuracy {_fmt(_get(d, 'no_rationale', 'accuracy'))} (n={_fmt(_get(d, 'questions'))})"
            with_r = _get(d, "with_rationale", "accuracy")
            if with_r is not None:
                text += (f", with rationale {_fmt(with_r)} vs {_fmt(_get(d, 'no_rationale_same_questions', 'accuracy'))}"
                         f" without on the same {_fmt(_get(d, 'with_rationale', 'count'))}")
            acc.append(text)
        return "; ".join(acc) or "see metrics.json"
    return ""


KGC_KEYS = ("mrr", "hits@1", "hits@3", "hits@10", "mr")


def kgc_comparison(results: list[StageResult]) -> dict | None:
    """The starting model's and the trained model's KG completion metrics
    (both directions, filtered), when the run evaluated both."""
    found = {}
    for r in results:
        if r.name in ("eval/kgc_start", "eval/kgc") and (Path(r.out) / "metrics.json").is_file():
            m = json.loads((Path(r.out) / "metrics.json").read_text())
            found["start" if r.name.endswith("_start") else "trained"] = {
                "model": m["model"]["model"], "split": m["split"], "queries": m["queries"],
                **{k: m["both"][k] for k in KGC_KEYS if k in m["both"]}}
    return found if len(found) == 2 else None


def comparison_text(cmp: dict) -> str:
    """The starting and the trained model side by side, one line each."""
    s, t = cmp["start"], cmp["trained"]
    head = f"KG completion, {s['split']} ({s['queries']:,} queries, filtered, both directions):"
    def line(label, m):
        return (f"  {label:<9} MRR {m['mrr']:.4f}  Hits@1 {m['hits@1']:.4f}  Hits@3 {m['hits@3']:.4f}  "
                f"Hits@10 {m['hits@10']:.4f}  MR {m['mr']:,.0f}   {m['model']}")
    ratio = f"  trained / start: MRR x{t['mrr'] / s['mrr']:.2f}" if s["mrr"] else ""
    return "\n".join([head, line("start", s), line("trained", t)]) + ("\n" + ratio if ratio else "")


def qa_comparison(results: list[StageResult]) -> dict | None:
    """Multiple-choice accuracy (no rationale in context) of every QA stage
    of the run, with its 95% bootstrap interval, when there are two or more."""
    found, correct = {}, {}
    for r in results:
        if r.name.startswith("eval/qa") and (Path(r.out) / "metrics.json").is_file():
            m = json.loads((Path(r.out) / "metrics.json").read_text())
            label = r.name[len("eval/qa_"):] if r.name != "eval/qa" else "trained"
            for name, d in (m.get("multiple_choice") or {}).items():
                nr = d.get("no_rationale") or {}
                found.setdefault(name, {})[label] = {"model": m["model"]["model"], "questions": d.get("questions"),
                                                     "accuracy": nr.get("accuracy"), "ci95": nr.get("ci95")}
            for name, by_id in _correct_by_question(Path(r.out)).items():
                correct.setdefault(name, {})[label] = by_id
    if not any(len(v) > 1 for v in found.values()):
        return None
    for name, by_label in correct.items():
        if "trained" in by_label and name in found:
            paired = {other: _paired(by_label["trained"], by_id) for other, by_id in by_label.items() if other != "trained"}
            if paired:
                found[name]["trained"]["paired"] = paired
    return found


def _correct_by_question(out: Path) -> dict[str, dict[str, bool]]:
    """dataset -> question id -> answered right, without a rationale in context."""
    path = out / "predictions.parquet"
    if not path.is_file():
        return {}
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["dataset", "question_id", "condition", "answer", "predicted"]).to_pylist()
    out_: dict[str, dict[str, bool]] = {}
    for row in t:
        if row["condition"] == "no_rationale":
            out_.setdefault(row["dataset"], {})[row["question_id"]] = row["predicted"] == row["answer"]
    return out_


def _paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    """Accuracy of ``a`` minus ``b`` on the questions both answered, with a
    paired 95% bootstrap interval (the same questions resampled for both:
    two models scored on one question set are not independent samples, and
    their separate intervals overlap far more than their difference varies)."""
    import numpy as np

    from kgscale.eval.qa import bootstrap_interval

    ids = sorted(set(a) & set(b))
    d = np.array([float(a[i]) - float(b[i]) for i in ids])
    return {"difference": round(float(d.mean()), 4) if len(d) else None, "ci95": bootstrap_interval(d),
            "questions": len(ids), "only_first_right": int((d > 0).sum()), "only_second_right": int((d < 0).sum())}


def qa_comparison_text(cmp: dict) -> str:
    lines = []
    for name, by_model in cmp.items():
        n = next(iter(by_model.values()))["questions"]
        lines.append(f"{name} multiple choice ({n:,} questions, no rationale in context):")
        for label, m in by_model.items():
            ci = m["ci95"]
            lines.append(f"  {label:<9} accuracy {m['accuracy']:.4f}" + (f"  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                         + f"   {m['model']}")
        for other, p in (by_model.get("trained", {}).get("paired") or {}).items():
            if p["difference"] is None:
                continue
            ci = p["ci95"]
            lines.append(f"  trained - {other}: {p['difference']:+.4f}, paired 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]"
                         f" (right only trained {p['only_first_right']}, only {other} {p['only_second_right']})")
    return "\n".join(lines)


# metrics.jsonl keys that are not loss parts
NOT_LOSSES = {"step", "epoch", "lr", "temperature", "tokens_per_s", "samples_per_s", "window_s", "peak_memory_mb",
              "memory_mb", "tensor_memory_mb",
              "s_per_step", "time", "answer_tokens", "accuracy", "candidates", "pos_cosine", "tokens", "samples", "grad_norm", "completion_tokens"}


def _metrics(out: Path) -> list[dict]:
    path = Path(out) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(results: list[StageResult]) -> str:
    rows = [("stage", "status", "time", "result")]
    for r in results:
        rows.append((r.name, "current" if r.skipped else "ran", f"{r.seconds:.1f} s", headline(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 40)
    return "\n".join(lines)


# panels of a run's figure besides its loss parts: (title, metric keys, y label)
CURVE_PANELS = (("accuracy", ("accuracy",), "share"), ("learning rate", ("lr",), "lr"),
                ("temperature", ("temperature",), "T"), ("throughput", ("tokens_per_s",), "tokens/s"),
                ("memory", ("peak_memory_mb", "memory_mb"), "MB"))


def _spans_decades(values: list[float]) -> bool:
    pos = [v for v in values if v is not None and v > 0]
    return len(pos) == len([v for v in values if v is not None]) and len(pos) > 1 and max(pos) / min(pos) > 30


def plot_training(results: list[StageResult], directory: Path) -> list[Path]:
    """One figure a training run, ``directory/NAME.png`` with its data beside
    it as ``NAME.csv``: each loss part in its own panel (log scale where it
    spans decades), then accuracy, learning rate, temperature, throughput and
    memory, each apart. The PNG paths."""
    runs = [(r.name.split("/", 1)[1], _metrics(r.out)) for r in results if r.name.startswith("train/")]
    runs = [(n, rows) for n, rows in runs if rows]
    if not runs:
        return []
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, rows in runs:
        steps = [r["step"] for r in rows]
        numeric = [k for k, v in rows[-1].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        losses = [k for k in numeric if k not in NOT_LOSSES]
        if "loss" in losses:  # a part that is the whole loss (one objective alone) needs no panel of its own
            losses = ["loss"] + [k for k in losses if k != "loss" and any(r.get(k) != r.get("loss") for r in rows)]
        panels = [(k, (k,), "loss") for k in losses] + [p for p in CURVE_PANELS if any(k in numeric for k in p[1])]
        cols = 3
        nrows = -(-len(panels) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(12, 2.7 * nrows), squeeze=False)
        for ax, (title, keys, ylabel) in zip(axes.flat, panels):
            for k in keys:
                if k in numeric:
                    ys = [r.get(k) for r in rows]
                    ax.plot(steps, ys, label=k.replace("_", " "))
                    if _spans_decades(ys):
                        ax.set_yscale("log")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=8)
            if len(keys) > 1:
                ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"training run {name}: {len(rows)} points to step {steps[-1]}", fontsize=11)
        fig.tight_layout()
        png = directory / f"{name}.png"
        fig.savefig(png, dpi=90)
        plt.close(fig)
        with open(directory / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(numeric)
            w.writerows([[r.get(k, "") for k in numeric] for r in rows])
        out.append(png)
    return out
