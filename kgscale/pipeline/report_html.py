"""``report.html``: the whole run in one self-contained page.

Built from what the run left on disk (``summary.json``, each stage's
directory, ``curves/*.png``, ``run_config.yaml``), so ``kgscale report
RUN_DIR`` rebuilds it at any time. One file: styles inline, images as data
URIs, no script or font from the network; it opens offline. Sections appear
for the stages the run has: the stage table; KG completion with the starting
model beside the trained one, per-relation MRR as bars and example queries
with each model's top 5; question answering with examples right and wrong,
with and without rationale; mined paths and rationales; the training
curves; the configuration.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

REPORT = "report.html"
EXAMPLES = 6  # example questions, paths, queries shown per section

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6rem;margin:0 0 4px} h2{font-size:1.25rem;margin:0 0 12px;border-bottom:1px solid #dde1e7;padding-bottom:6px}
h3{font-size:1rem;margin:18px 0 8px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#687285} .good{color:#137333;font-weight:600} .bad{color:#b3261e}
.answer{background:#e6f4ea;font-weight:600} .self{color:#8a6d00}
.bars td{padding:2px 8px} .bar{height:10px;border-radius:2px;display:inline-block;vertical-align:middle}
.bar.start{background:#9aa5b8} .bar.trained{background:#1a73e8}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:12px} .card{border:1px solid #eef0f3;border-radius:6px;padding:8px 10px;margin:8px 0}
ol{margin:4px 0 4px 20px;padding:0} pre{background:#f6f7f9;padding:10px;overflow:auto;font-size:.8rem;max-height:480px}
img{max-width:100%}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else _e(x)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stage_dir(run_dir: Path, stage: dict) -> Path:
    """Where a stage's output is now (a run directory may have been moved)."""
    name = stage["stage"]
    here = run_dir / ("snapshot" if name == "ingest" else name)
    return here if here.exists() else Path(stage.get("out", here))


def _table(head: list[str], rows: list[list[str]], num_cols: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td class='num'>{c}</td>" if i in num_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _stages(summary: dict) -> str:
    rows = [[_e(s["stage"]), "current, skipped" if s.get("skipped") else "ran", f"{s.get('seconds', 0):.1f} s",
             _e(s.get("result", ""))] for s in summary.get("stages", [])]
    total = sum(s.get("seconds", 0) for s in summary.get("stages", []))
    return (f"<section id='stages'><h2>Stages</h2>{_table(['stage', 'status', 'time', 'result'], rows, {2})}"
            f"<p class='muted'>{len(rows)} stages, {total:.0f} s in all.</p></section>")


def _kgc(summary: dict, dirs: dict[str, Path]) -> str:
    cmp = summary.get("kgc")
    trained_dir = dirs.get("eval/kgc")
    if not cmp and trained_dir is None:
        return ""
    parts = ["<section id='kgc'><h2>KG completion</h2>"]
    cols = ("mrr", "hits@1", "hits@3", "hits@10", "mr")
    if cmp:
        rows = [[_e(side), _e(cmp[side].get("model", ""))] + [_num(cmp[side].get(c), 1 if c == "mr" else 4) for c in cols]
                for side in ("start", "trained") if side in cmp]
        parts.append(_table(["", "model", "MRR", "Hits@1", "Hits@3", "Hits@10", "MR"], rows, {2, 3, 4, 5, 6}))
        if "start" in cmp and "trained" in cmp:
            s, t = cmp["start"], cmp["trained"]
            parts.append(f"<p>{_num(s.get('queries'))} {_e(s.get('split', 'test'))} queries, filtered, every entity a "
                         f"candidate: MRR {_num(s['mrr'])} &rarr; <span class='good'>{_num(t['mrr'])}</span>, "
                         f"Hits@1 {_num(s['hits@1'])} &rarr; {_num(t['hits@1'])}.</p>")
    start_m = _read_json(dirs["eval/kgc_start"] / "metrics.json") if "eval/kgc_start" in dirs else None
    trained_m = _read_json(trained_dir / "metrics.json") if trained_dir else None
    if trained_m and trained_m.get("per_relation"):
        parts.append("<h3>MRR per relation</h3>" + _relation_bars(start_m, trained_m))
    start_x = _read_json(dirs["eval/kgc_start"] / "examples.json") if "eval/kgc_start" in dirs else None
    trained_x = _read_json(trained_dir / "examples.json") if trained_dir else None
    if trained_x:
        parts.append("<h3>Example queries</h3><p class='muted'>Each model's top 5, other known answers filtered; "
                     "the true answer <span class='answer'>marked</span>, the query's own entity "
                     "<span class='self'>in brown</span>.</p>" + _kgc_examples(start_x, trained_x))
    parts.append("</section>")
    return "".join(parts)


def _relation_bars(start: dict | None, trained: dict) -> str:
    rels = sorted(trained["per_relation"], key=lambda r: -trained["per_relation"][r]["both"]["count"])
    rows = []
    for r in rels:
        t = trained["per_relation"][r]["both"]
        s = (start or {}).get("per_relation", {}).get(r, {}).get("both", {})
        bars = ""
        if s:
            bars += f"<span class='bar start' style='width:{300 * s['mrr']:.0f}px'></span> {s['mrr']:.3f}<br>"
        bars += f"<span class='bar trained' style='width:{300 * t['mrr']:.0f}px'></span> {t['mrr']:.3f}"
        rows.append(f"<tr><td>{_e(r.lstrip('_').replace('_', ' '))}</td><td class='num'>{t['count']:,}</td>"
                    f"<td>{bars}</td></tr>")
    legend = ("<p class='muted'><span class='bar start' style='width:20px'></span> starting model &nbsp; "
              "<span class='bar trained' style='width:20px'></span> trained</p>") if start else ""
    return f"{legend}<table class='bars'><thead><tr><th>relation</th><th>queries</th><th>MRR</th></tr></thead>" \
           f"<tbody>{''.join(rows)}</tbody></table>"


def _top_list(example: dict) -> str:
    items = []
    for c in example["top"]:
        cls = "answer" if c["is_answer"] else ("self" if c.get("is_query_entity") else "")
        items.append(f"<li class='{cls}'>{_e(c['text'][:120])} <span class='muted'>{c['score']:.3f}</span></li>")
    return f"<ol>{''.join(items)}</ol><div class='muted'>true answer at rank {example['rank']:g}</div>"


def _kgc_examples(start: list | None, trained: list) -> str:
    by_query = {(x["entity"], x["relation"], x["direction"]): x for x in (start or [])}
    cards = []
    for ex in trained[:EXAMPLES]:
        s = by_query.get((ex["entity"], ex["relation"], ex["direction"]))
        head = (f"<div><b>{_e(ex['query'][:200])}</b></div><div class='muted'>answer: "
                f"{_e(ex['answer_text'][:120])}</div>")
        body = f"<div class='pair'><div><i>starting model</i>{_top_list(s)}</div><div><i>trained</i>" \
               f"{_top_list(ex)}</div></div>" if s else f"<div>{_top_list(ex)}</div>"
        cards.append(f"<div class='card kgc-example'>{head}{body}</div>")
    return "".join(cards)


def _qa(summary: dict, dirs: dict[str, Path]) -> str:
    cmp = summary.get("qa")
    if not cmp and "eval/qa" not in dirs:
        return ""
    parts = ["<section id='qa'><h2>Question answering</h2>"]
    for name, sides in (cmp or {}).items():
        rows = []
        for side in ("start", "trained"):
            if side in sides:
                m = sides[side]
                ci = m.get("ci95") or [None, None]
                rows.append([_e(side), _e(m.get("model", "")), _num(m.get("questions")), _num(m.get("accuracy")),
                             f"[{_num(ci[0])}, {_num(ci[1])}]"])
        parts.append(f"<h3>{_e(name)}</h3>" + _table(["", "model", "questions", "accuracy", "95% CI"], rows, {2, 3}))
        for other, p in (sides.get("trained", {}).get("paired") or {}).items():
            parts.append(f"<p>trained &minus; {_e(other)}: <b>{p['difference']:+.3f}</b>, paired 95% CI "
                         f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}] over {p['questions']} questions.</p>")
    parts.append(_qa_examples(dirs))
    parts.append("</section>")
    return "".join(parts)


def _predictions(out: Path | None) -> list[dict]:
    if out is None or not (out / "predictions.parquet").is_file():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(out / "predictions.parquet").to_pylist()


def _qa_examples(dirs: dict[str, Path]) -> str:
    trained = _predictions(dirs.get("eval/qa"))
    if not trained:
        return ""
    start = {(r["question_id"], r["condition"]): r for r in _predictions(dirs.get("eval/qa_start"))}
    with_r = {r["question_id"]: r for r in trained if r["condition"] == "with_rationale"}
    plain = [r for r in trained if r["condition"] == "no_rationale"]
    right = [r for r in plain if r["predicted"] == r["answer"]]
    wrong = [r for r in plain if r["predicted"] != r["answer"]]
    # the questions training changed first, then rationale-bearing ones, then the rest
    def order(rows):
        def key(r):
            s = start.get((r["question_id"], "no_rationale"))
            changed = s is not None and (s["predicted"] == s["answer"]) != (r["predicted"] == r["answer"])
            return (not changed, r["question_id"] not in with_r)
        return sorted(rows, key=key)
    html_parts = []
    for title, rows in (("Right after training", order(right)), ("Wrong after training", order(wrong))):
        cards = [_qa_card(r, start.get((r["question_id"], "no_rationale")), with_r.get(r["question_id"]))
                 for r in rows[:EXAMPLES // 2]]
        if cards:
            html_parts.append(f"<h3>{title}</h3>" + "".join(cards))
    return "".join(html_parts)


def _qa_card(r: dict, start: dict | None, with_r: dict | None) -> str:
    def pick(row):
        ok = row["predicted"] == row["answer"]
        return f"<span class='{'good' if ok else 'bad'}'>{_e(row['choices'][row['predicted']])}</span>"
    lines = [f"<div><b>{_e(r.get('question') or r['question_id'])}</b></div>",
             f"<div class='muted'>choices: {_e(' | '.join(r['choices']))}; answer: "
             f"<b>{_e(r['choices'][r['answer']])}</b></div>", f"<div>trained: {pick(r)}"]
    if start is not None:
        lines.append(f" &nbsp; starting model: {pick(start)}")
    if with_r is not None:
        lines.append(f" &nbsp; trained, with the rationale in context: {pick(with_r)}")
    lines.append("</div>")
    return f"<div class='card qa-example'>{''.join(lines)}</div>"


def _rationales(dirs: dict[str, Path]) -> str:
    out = dirs.get("rationales")
    if out is None or not (out / "rationales.parquet").is_file():
        return ""
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "rationales.parquet").to_pylist()
    cards = []
    for r in rows[:EXAMPLES]:
        paths = "".join(f"<li>{_e(p)}</li>" for p in (r.get("paths") or [])[:4])
        flag = " <span class='bad'>(flagged)</span>" if r.get("flagged") else ""
        cards.append(f"<div class='card rationale-example'><div><b>{_e(r['question'])}</b> &rarr; "
                     f"{_e(r['answer'])}{flag}</div><div class='muted'>mined paths:</div><ol>{paths}</ol>"
                     f"<div class='muted'>rationale ({_e(r.get('teacher', ''))}):</div><div>{_e(r['rationale'])}</div></div>")
    return (f"<section id='rationales'><h2>Mined paths and rationales</h2><p class='muted'>{len(rows):,} "
            f"rationales; the first {len(cards)}.</p>{''.join(cards)}</section>")


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{data}'>"


def _training(run_dir: Path, summary: dict) -> str:
    names = [s["stage"].split("/", 1)[1] for s in summary.get("stages", []) if s["stage"].startswith("train/")]
    pngs = [(n, run_dir / "curves" / f"{n}.png") for n in names if (run_dir / "curves" / f"{n}.png").is_file()]
    if not pngs:
        return ""
    figures = "".join(f"<h3>{_e(n)}</h3>{_image(p, f'training curves of {n}')}" for n, p in pngs)
    return f"<section id='training'><h2>Training curves</h2>{figures}</section>"


def _config(run_dir: Path) -> str:
    cfg = run_dir / "run_config.yaml"
    if not cfg.is_file():
        return ""
    return f"<section id='config'><h2>Configuration</h2><pre>{_e(cfg.read_text(encoding='utf-8'))}</pre></section>"


def write_report(run_dir: Path) -> Path:
    """Build ``RUN_DIR/report.html`` from the run's files; its path."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    if summary is None:
        raise FileNotFoundError(f"{run_dir / 'summary.json'} is missing or unreadable: is {run_dir} a kgscale run "
                                f"directory (one that `kgscale run` finished)?")
    dirs = {s["stage"]: _stage_dir(run_dir, s) for s in summary.get("stages", [])}
    when = dt.datetime.fromtimestamp((run_dir / "summary.json").stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    body = "".join([
        f"<header><h1>kgscale run: {_e(run_dir.name)}</h1><div class='muted'>{_e(run_dir.resolve())} &middot; "
        f"finished {when}</div></header>",
        _stages(summary), _kgc(summary, dirs), _qa(summary, dirs), _rationales(dirs), _training(run_dir, summary),
        _config(run_dir),
    ])
    # the one script: it records whether the page's images decoded, for a test in a real browser
    script = ("<script>window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);"
              "document.body.setAttribute('data-images-decoded',i.filter(function(x){return x.complete&&"
              "x.naturalWidth>0}).length+'/'+i.length)})</script>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>kgscale run {_e(run_dir.name)}"
            f"</title><style>{CSS}</style></head><body><main>{body}</main>{script}</body></html>\n")
    out = run_dir / REPORT
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
