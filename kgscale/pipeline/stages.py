"""Running a stage only when its output is missing or stale.

A stage's *fingerprint* is a hash of what determines its output: its name,
its config section, the fingerprints of the stages it reads, and for a
source its input files' checksums. The fingerprint is written into the
stage's manifest; when a later run finds a manifest with the same
fingerprint, the stage is skipped. A run that was interrupted therefore
continues where it stopped, and a changed setting reruns exactly the stages
it affects.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kgscale.output import MANIFEST

if TYPE_CHECKING:
    from kgscale.pipeline.storage import RunStorage

FINGERPRINT = "fingerprint"


def fingerprint(name: str, config: Any, upstream: list[str], extra: Any = None) -> str:
    payload = json.dumps({"stage": name, "config": config, "upstream": upstream, "extra": extra},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def finished_fingerprint(out: Path) -> str | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(FINGERPRINT)
    except (OSError, json.JSONDecodeError):
        return None


def stamp(out: Path, fp: str) -> dict:
    """Add the fingerprint to a finished stage's manifest (after its atomic rename)."""
    path = Path(out) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[FINGERPRINT] = fp
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return manifest


@dataclass
class StageResult:
    name: str
    out: Path
    fingerprint: str
    skipped: bool
    seconds: float
    manifest: dict = field(default_factory=dict)
    pulled: bool = False  # skipped because the run's URI held it; copied down


def run_stage(name: str, out: Path, fp: str, run: Callable[[], Any], *, force: bool = False,
              storage: "RunStorage | None" = None) -> StageResult:
    """Run ``run()`` (which writes ``out`` with overwrite) unless ``out`` already
    holds a finished result with fingerprint ``fp``. With a ``storage`` whose
    run directory is a URI (``out`` lies in its local copy), a finished stage
    is copied up, and one that is current there but not here is copied down
    instead of being run."""
    out = Path(out)
    remote = storage is not None and storage.remote is not None
    rel = storage.rel(out) if remote else ""
    t0 = time.perf_counter()
    if not force and finished_fingerprint(out) == fp:
        if remote and storage.remote_fingerprint(rel) != fp:
            storage.push(rel)  # finished here earlier but not yet kept there
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return StageResult(name, out, fp, True, time.perf_counter() - t0, manifest)
    if not force and remote and storage.remote_fingerprint(rel) == fp:
        storage.pull(rel)
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return StageResult(name, out, fp, True, time.perf_counter() - t0, manifest, pulled=True)
    run()
    manifest = stamp(out, fp)
    if remote:
        storage.push(rel)
    return StageResult(name, out, fp, False, time.perf_counter() - t0, manifest)
