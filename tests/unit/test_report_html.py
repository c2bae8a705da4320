"""`kgscale report`: a run directory's report.html, opened in a real browser.
(The whole quickstart's report is checked the same way in
tests/cluster/test_job_submit.py.)"""
from __future__ import annotations

import json

from kgscale.cli import main
from tests.browser import drawn_fraction, render


def test_a_run_with_one_stage_reports_that_stage_alone(tmp_path, capsys):
    run = tmp_path / "try1"
    (run / "snapshot").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"stages": [
        {"stage": "ingest", "skipped": False, "seconds": 4.2, "out": str(run / "snapshot"),
         "result": "3 entities, 2 relations, 3/1/1 triples, 0 rejected <script>alert(1)</script>"}],
        "kgc": None, "qa": None}))
    (run / "run_config.yaml").write_text("ingest: {source: dataset:wn18rr}\n")
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    dom = render(run / "report.html", tmp_path / "shot.png", height=800)
    assert '<section id="stages">' in dom and '<section id="config">' in dom
    for absent in ("kgc", "qa", "rationales", "training"):
        assert f'<section id="{absent}">' not in dom
    assert "3 entities, 2 relations" in dom and "&lt;script&gt;alert(1)" in dom  # text is escaped, not run
    assert 'data-images-decoded="0/0"' in dom  # the page's script ran
    assert drawn_fraction(tmp_path / "shot.png") > 0.05


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json is missing" in capsys.readouterr().err


def test_one_curves_figure_a_training_run_with_its_data_beside_it(tmp_path):
    from kgscale.pipeline.report import _spans_decades, plot_training
    from kgscale.pipeline.stages import StageResult

    results = []
    for name, parts in (("kalm", {"contrastive": 1.0}), ("kale", {"ce": 2.0, "kl": 1e-5})):
        out = tmp_path / "train" / name
        out.mkdir(parents=True)
        rows = [{"step": s, "loss": 5.0 / s, **{k: v / s for k, v in parts.items()}, "lr": 1e-4, "tokens_per_s": 900.0,
                 "peak_memory_mb": 1200.0, "memory_mb": 1100.0} for s in range(10, 101, 10)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        results.append(StageResult(f"train/{name}", out, "fp", False, 1.0))
    pngs = plot_training(results, tmp_path / "curves")
    assert [p.name for p in pngs] == ["kalm.png", "kale.png"] and all(p.stat().st_size > 5000 for p in pngs)
    csv = (tmp_path / "curves" / "kale.csv").read_text().splitlines()
    assert csv[0].split(",")[:4] == ["step", "loss", "ce", "kl"] and len(csv) == 11
    assert _spans_decades([1e-5, 1e-2]) and not _spans_decades([5.0, 1.0]) and not _spans_decades([0.0, 1.0])
