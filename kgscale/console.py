"""What a run shows on its console, and where the libraries' logs go instead.

A pipeline run under Ray prints, besides kgscale's own lines, every log line
of Ray, Ray Data, Ray Train, DeepSpeed and transformers from the driver and
from every worker: the quickstart printed 1,311 lines, 798 of them Ray
Train's "Failed to query Ray Train Controller actor state" (its placement
group cleaner polls the State API, which a Ray started without the dashboard
does not have), 235 its ``TrainingReport(...)`` dicts, and weight-loading
bars and execution plans between them. :func:`quiet` keeps the console to
kgscale's own lines, real warnings and errors, and writes everything, shown
or not, to ``logs/driver.log`` (the driver's loggers) and
``logs/workers.log`` (every worker's output) in the run directory. Training
progress lines come at most every ``PROGRESS_EVERY_S`` seconds (and the last
one), rewritten in place on a terminal, one plain line each in a log file
such as ``ray job logs`` shows. ``verbose`` leaves Ray's console as it is.

The worker half hooks the stream dispatcher the Ray driver prints workers'
lines through (``ray._private``, Ray's only hook for it); where that is
missing the console stays as Ray prints it, and nothing is lost.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path

PROGRESS_EVERY_S = 30.0

# worker lines that say nothing to a person running kgscale (each seen in a
# quickstart run's console); anything else a worker prints is shown
WORKER_NOISE = re.compile("|".join([
    r"Failed to query Ray Train Controller actor state",
    r"Reporting training result \d+: TrainingReport\(",
    r"Checkpoint successfully created at: ",
    r"^\s*(Loading weights|Writing model shards|Loading checkpoint shards)\b.*\|",
    r"Progress bars disabled\. To enable",
    r"A new progress UI is available",
    r"Setting up process group for: ",
    r"Requesting resources: \{",
    r"Attempting to start training worker group",
    r"Started training worker group of size",
    r"^\s*- \(ip=.*\) world_rank=\d+",
    r"\[real_accelerator\.py:\d+:get_accelerator\]",
    r"Dataset \S+ execution finished in",
    r"ExecutionOptions\.exclude_resources. is deprecated",
    r"^\s*self\.exclude_resources = exclude_resources",
    r"has constructor arguments in the object store and max_restarts > 0",
    # a worker's Ray Data progress bar (a training worker iterating its shard)
    # as the JSON state updates tqdm_ray sends; Ray's own printer draws them,
    # this one would print the JSON, and the worker's step lines say more
    r"__ray_tqdm_magic_token__",
    # libraries' deprecation notices about their own internals, and the source
    # line Python's warnings print under them
    r"site-packages/\S+: (FutureWarning|DeprecationWarning|RayDeprecationWarning): ",
    r"^\s*warnings\.warn\($",
    r"^\s*$",
]))
# driver records below WARNING stay off the console; these warnings too
DRIVER_NOISE = re.compile("|".join([
    r"Token authentication is enabled for this Ray cluster",
    r"Progress bars disabled\. To enable",
    r"The Ray cluster currently does not have any available CPUs",
]))
PROGRESS = re.compile(r"^\[kgscale train\] step (\d+)/(\d+) ")


class _DriverFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not DRIVER_NOISE.search(record.getMessage())


class WorkerLines:
    """Which worker lines reach the console, and how progress lines show."""

    def __init__(self, tty: bool, every_s: float = PROGRESS_EVERY_S, clock=time.monotonic) -> None:
        self.tty, self.every_s, self.clock = tty, every_s, clock
        self.last_progress: float | None = None
        self.open_progress = False  # a progress line is on the terminal's last row, unterminated

    def shown(self, line: str) -> bool:
        return not WORKER_NOISE.search(line)

    def render(self, line: str) -> str | None:
        """What to write for ``line`` (None: nothing)."""
        if not self.shown(line):
            return None
        m = PROGRESS.match(line)
        if m is None:
            prefix = "\n" if self.open_progress else ""
            self.open_progress = False
            return prefix + line + "\n"
        if self.tty:
            self.open_progress = m.group(1) != m.group(2)
            return "\r\033[K" + line + ("" if self.open_progress else "\n")
        now = self.clock()
        last = m.group(1) == m.group(2)
        if not last and self.last_progress is not None and now - self.last_progress < self.every_s:
            return None
        self.last_progress = now
        return line + "\n"


class _WorkerSink:
    """The dispatcher handler: every line to ``logs/workers.log``, the shown
    ones to the console."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8", errors="replace")
        self.lines = {False: WorkerLines(sys.stdout.isatty()), True: WorkerLines(sys.stderr.isatty())}
        self.lock = threading.Lock()

    def __call__(self, data: dict) -> None:
        who = data.get("actor_name") or data.get("task_name") or "worker"
        with self.lock:
            for line in data.get("lines", []):
                self.file.write(f"({who} pid={data.get('pid')}) {line}\n")
            self.file.flush()
            err = bool(data.get("is_err"))
            sink, lines = (sys.stderr if err else sys.stdout), self.lines[err]
            shown = data.get("lines", [])
            if data.get("pid") == "autoscaler":  # its whole log arrives; Ray prints only its event lines
                shown = list(_autoscaler_events(shown))
            out = "".join(x for x in (lines.render(line) for line in shown) if x)
            if out:
                sink.write(out)
                sink.flush()


def _autoscaler_events(lines: list[str]):
    try:
        from ray._private.worker import filter_autoscaler_events
    except ImportError:
        return iter(())
    return filter_autoscaler_events(lines)


def quiet(log_dir: Path, verbose: bool = False) -> Path | None:
    """Send the driver's and the workers' library logs to ``log_dir`` and keep
    the console to what a person wants; the directory, or None with
    ``verbose``. The driver's half works before Ray starts (its start-up
    warnings are caught too); the workers' half needs a started Ray and is
    applied again by :func:`quiet_workers`. Where Ray's hook is missing the
    workers' lines stay as Ray prints them."""
    if verbose:
        return None
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    _no_weight_bars()
    driver = logging.FileHandler(log_dir / "driver.log", encoding="utf-8")
    driver.kgscale_run_log = True
    driver.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "ray.data"):
        lg = logging.getLogger(name)
        for h in [h for h in lg.handlers if getattr(h, "kgscale_run_log", False)]:  # an earlier run's, in this process
            lg.removeHandler(h)
            h.close()
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) \
                    and not any(isinstance(f, _DriverFilter) for f in h.filters):
                h.addFilter(_DriverFilter())
        lg.addHandler(driver)
    quiet_workers(log_dir)
    return log_dir


def _no_weight_bars() -> None:
    """transformers' bars on the driver ("Loading weights", "Writing model
    shards": a packaged model converted or a tiny model written on a machine's
    first run) off; on workers the same lines are filtered by WORKER_NOISE."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def quiet_workers(log_dir: Path) -> None:
    """Print the workers' lines that reach this driver through the filter
    (once Ray has started), all of them to ``log_dir/workers.log``."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    names = [name for name, _ in getattr(dispatcher, "handlers", [])]
    if "ray_print_logs" in names or "kgscale_console" in names:
        for name, handler in dispatcher.handlers:
            if name == "kgscale_console":
                handler.file.close()
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.remove_handler("kgscale_console")
        dispatcher.add_handler("kgscale_console", _WorkerSink(Path(log_dir) / "workers.log"))


class Ticker:
    """A driver-side progress line for work counted in items: at most one line
    every ``every_s`` seconds while it runs (rewritten in place on a
    terminal), and a closing line with the count, time and rate when the work
    took long enough to have shown one."""

    def __init__(self, label: str, total: int, unit: str, every_s: float = PROGRESS_EVERY_S,
                 stream=None, clock=time.monotonic) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.start = self.last = clock()
        self.shown = False

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        self._write(f"[kgscale] {self.label}: {done:,}/{self.total:,} {self.unit} ({100 * done / self.total:.0f}%), "
                    f"{rate:,.0f} {self.unit}/s, about {left:.0f} s left", end=not self.tty)

    def done(self) -> None:
        took = self.clock() - self.start
        if self.shown or took >= self.every_s:
            self._write(f"[kgscale] {self.label}: {self.total:,} {self.unit} in {took:.0f} s "
                        f"({self.total / max(took, 1e-9):,.0f} {self.unit}/s)", end=True)

    def _write(self, text: str, end: bool) -> None:
        prefix = "\r\033[K" if self.tty else ""
        self.stream.write(prefix + text + ("\n" if end else ""))
        self.stream.flush()
        self.shown = True
