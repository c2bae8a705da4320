"""The quiet console against a real Ray: a driver that starts its own local
Ray (as `kgscale run` does), a worker printing Ray Train's noise beside
kgscale's own lines, and Ray Data logging on the driver. The console keeps
kgscale's lines and real errors; logs/ keeps everything."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging, sys, time
    import ray
    from kgscale.console import quiet

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=True)
    print("LOGS", quiet(sys.argv[1]), flush=True)

    @ray.remote
    def work():
        for _ in range(3):
            print("Failed to query Ray Train Controller actor state. State API may be temporarily unavailable.")
        print("Reporting training result 1: TrainingReport(checkpoint=None, metrics={'step': 10})")
        print("[kgscale train] ready in 1.0 s")
        print("RuntimeError: a real error", file=sys.stderr)
        return 1

    assert ray.get(work.remote()) == 1
    logging.getLogger("ray.data").info("Execution plan of Dataset dataset_1: InputDataBuffer[Input]")
    logging.getLogger("ray.data").warning("a real Ray Data warning")
    time.sleep(12)  # workers' lines reach the driver asynchronously; the autoscaler logs every 5 s
    ray.shutdown()
""")


def test_the_console_shows_kgscales_lines_and_errors_and_logs_keep_the_rest(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert "[kgscale train] ready in 1.0 s" in console and "RuntimeError: a real error" in console
    assert "a real Ray Data warning" in console
    for noise in ("Failed to query Ray Train Controller", "TrainingReport(", "Execution plan of Dataset",
                  "Autoscaler status"):
        assert noise not in console, noise
    workers = (tmp_path / "logs" / "workers.log").read_text()
    assert workers.count("Failed to query Ray Train Controller") == 3 and "TrainingReport(" in workers
    assert "[kgscale train] ready in 1.0 s" in workers  # the log holds what was shown too
    assert "Execution plan of Dataset dataset_1" in (tmp_path / "logs" / "driver.log").read_text()
