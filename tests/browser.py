"""A page as a person sees it: headless Chromium (Debian's `chromium`, which
scripts/test.sh installs) renders a file, and the test gets the DOM after
load and a screenshot."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-background-networking", "--virtual-time-budget=5000"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium here (scripts/test.sh installs Debian's package where it can)")
    return path


def render(page: Path, screenshot: Path, width: int = 1200, height: int = 4000) -> str:
    """The DOM Chromium built from ``page`` (scripts run), and a screenshot of it."""
    url = page.resolve().as_uri()
    dom = subprocess.run([chromium(), *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run([chromium(), *FLAGS, f"--window-size={width},{height}", f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 0, shot.stderr[-2000:]
    return dom.stdout


def drawn_fraction(png: Path) -> float:
    """Share of the screenshot's pixels that are not the page background."""
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 24)
    background = max(colors)[0]
    return 1 - background / (img.width * img.height)
