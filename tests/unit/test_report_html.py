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
