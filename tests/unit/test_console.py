"""Which worker lines reach the console, and how training progress shows."""
from __future__ import annotations

from kgscale.console import WorkerLines

NOISE = [
    "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. Continuing to monitor.",
    "Reporting training result 4: TrainingReport(checkpoint=None, metrics={'step': 40}, validation_spec=None)",
    "Loading weights: 100%|██████████| 103/103 [00:00<00:00, 2122.02it/s]",
    "Setting up process group for: env:// [rank=0, world_size=1]",
    "[2026-12-01 13:44:10,123] [WARNING] [real_accelerator.py:213:get_accelerator] Setting accelerator to CPU.",
    "/x/.venv/lib/python3.11/site-packages/transformers/modeling_utils.py:3303: FutureWarning: `is_gradient_check"
    "pointing` is deprecated and will be removed in v6.",
    "  warnings.warn(",
    "\x1b[32m✔️  Dataset train_0357A49latt24uiyU0TcQd_0 execution finished in 29.41 seconds",
    '{"__magic_token__": "__ray_tqdm_magic_token__", "x": 0, "pos": 0, "desc": "Running Dataset train_035AL_0.", '
    '"total": null, "unit": " row", "ip": "192.0.2.2", "pid": 21104, "uuid": "1b76", "closed": false}',
    "",
]
SHOWN = [
    "[kgscale train] kalm_contrastive on all-minilm-l6-v2: 5,323,392 of 45,426,432 parameters trained (full)",
    "Traceback (most recent call last):",
    "RuntimeError: a micro-batch of 32 samples does not fit",
    "UserWarning: the snapshot has entities without text",
]


def step(i: int, n: int = 100) -> str:
    return f"[kgscale train] step {i}/{n} ({i}%) | loss 5.0 | eta 1min"


def test_library_noise_is_hidden_and_everything_else_shown():
    lines = WorkerLines(tty=False)
    assert [line for line in NOISE if lines.shown(line)] == []
    assert [line for line in SHOWN if not lines.shown(line)] == []


def test_progress_in_a_log_file_is_one_plain_line_every_so_often_and_the_last():
    now = [0.0]
    lines = WorkerLines(tty=False, every_s=30, clock=lambda: now[0])
    out = []
    for i in range(10, 101, 10):
        now[0] += 10  # a line every 10 s
        out.append(lines.render(step(i)))
    shown = [x for x in out if x]
    assert shown == [step(10) + "\n", step(40) + "\n", step(70) + "\n", step(100) + "\n"]
    assert not any("\r" in x or "\x1b" in x for x in shown)  # nothing that floods a log file


def test_progress_on_a_terminal_rewrites_one_line():
    lines = WorkerLines(tty=True)
    a, b = lines.render(step(10)), lines.render(step(20))
    assert a.startswith("\r\x1b[K") and not a.endswith("\n") and b.startswith("\r\x1b[K")
    # another line first ends the progress line, so it is not overwritten
    assert lines.render(SHOWN[0]) == "\n" + SHOWN[0] + "\n"
    assert lines.render(step(100)).endswith("\n")  # the last step stays on screen
    assert lines.render(SHOWN[0]) == SHOWN[0] + "\n"


def test_a_ticker_prints_every_so_often_and_a_closing_line():
    import io

    from kgscale.console import Ticker

    now, out = [0.0], io.StringIO()
    t = Ticker("embedding entity views", 1000, "texts", every_s=30, stream=out, clock=lambda: now[0])
    for done in range(100, 1001, 100):
        now[0] += 10
        t.update(done)
    t.done()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[kgscale] embedding entity views: 300/1,000 texts (30%), 10 texts/s, about 70 s left"
    assert len(lines) == 4 and lines[-1] == "[kgscale] embedding entity views: 1,000 texts in 100 s (10 texts/s)"
    quick = io.StringIO()
    t = Ticker("x", 10, "texts", stream=quick, clock=lambda: 0.0)
    t.update(5)
    t.done()
    assert quick.getvalue() == ""  # work that took no time shows nothing


def test_a_quiet_run_turns_transformers_bars_off_on_the_driver(tmp_path, capsys):
    # a machine's first run converts the packaged GGUF model and writes the tiny
    # models from the driver; their "Loading weights" / "Writing model shards"
    # bars are library noise on a quiet console (they stay with -v)
    import logging

    from transformers.utils import logging as hf_logging

    from kgscale.console import quiet

    hf_logging.enable_progress_bar()
    before = {name: list(logging.getLogger(name).handlers) for name in ("ray", "ray.data")}
    try:
        assert quiet(tmp_path / "v", verbose=True) is None and hf_logging.is_progress_bar_enabled()
        quiet(tmp_path / "logs")
        assert not hf_logging.is_progress_bar_enabled()
        for _ in hf_logging.tqdm(range(3), desc="Writing model shards"):
            pass
        assert "Writing model shards" not in capsys.readouterr().err
    finally:
        hf_logging.enable_progress_bar()
        for name, handlers in before.items():
            lg = logging.getLogger(name)
            for h in [h for h in lg.handlers if h not in handlers]:
                lg.removeHandler(h)
                h.close()
