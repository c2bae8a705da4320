"""Stage outputs: written whole or not at all, each with a ``manifest.json``.

A stage writes into a temporary sibling directory and renames it into place
only when everything is written, so an interrupted stage never leaves a
half-written result that a later stage could mistake for a finished one.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import kgscale
from kgscale.errors import UserError

MANIFEST = "manifest.json"
# every stage's rejected input, one JSON line a row (kgscale.kg.rejects.RowLog)
REJECTS = "rejects.jsonl"


class OutputExistsError(UserError, FileExistsError):
    pass


class DiskFullError(UserError, OSError):
    """An output could not be written for want of space; names where."""


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory under ``root``, so that a rename that
    publishes it never points at data still in the page cache (a crash
    after the rename could otherwise leave empty files under a finished
    name)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Place the file ``src`` at ``dst`` as a hard link where the filesystem
    allows (a training run's exported model already lies in its last
    checkpoint: 540 MB for SmolLM2, written once, never changed in place),
    else as a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def place_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """:func:`link_or_copy` for a file or a whole directory."""
    if Path(src).is_dir():
        shutil.copytree(src, dst, copy_function=link_or_copy)
    else:
        link_or_copy(src, dst)


def refuse_existing(out: str | os.PathLike, overwrite: bool,
                    remedy: str = "pass --overwrite to replace it") -> None:
    """A stage's first step: an output that exists is an error unless it may be
    replaced, said before any work starts (``atomic_dir`` says it again at the
    end, for an output that appeared meanwhile)."""
    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; {remedy}")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    On an exception the temporary directory is removed and ``out`` is left as
    it was. With ``overwrite`` an existing ``out`` is replaced only after the
    new one is complete.
    """
    out = Path(out)
    refuse_existing(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, f"no space left to write {out} (on the device of {out.parent}); "
                                           f"free some and run again: nothing was replaced") from None
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    tmp.rename(out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_manifest(directory: str | os.PathLike, stage: str, **fields: Any) -> dict[str, Any]:
    """Write ``manifest.json`` with the common header and the stage's fields."""
    manifest = {
        "stage": stage,
        "kgscale_version": kgscale.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {MANIFEST}: it is not a finished kgscale output")
    return json.loads(path.read_text(encoding="utf-8"))


class Timer:
    """Named wall-clock timings for a manifest: ``with timer("read"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 4)

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.perf_counter() - self._start, 4)}


class StageOutput:
    """The skeleton every stage shares, written once.

    Made at the stage's start, it refuses an output that exists (before any
    work; ``remedy`` says what to pass instead) and starts the stage's
    :class:`Timer`. :meth:`writing` is the temporary directory that becomes
    ``out`` only when the block succeeds (:func:`atomic_dir`); :meth:`finish`,
    inside it, writes the reject log (``rejects.jsonl``) and the manifest:
    the common header, the stage's own fields, ``rejected`` and
    ``timings_s``::

        stage = StageOutput("paths", cfg.out, cfg.overwrite)
        with stage.timer("mine"):
            ...
        with stage.writing() as tmp:
            pq.write_table(table, tmp / "paths.parquet")
            return stage.finish(rejects, counts={...})

    Starting Ray stays the driver's own step: a stage checks its inputs
    first, and some need no cluster for some inputs.
    """

    def __init__(self, stage: str, out: str | os.PathLike, overwrite: bool = False,
                 remedy: str = "pass --overwrite to replace it") -> None:
        refuse_existing(out, overwrite, remedy)
        self.stage, self.out, self.overwrite = stage, Path(out), overwrite
        self.timer = Timer()
        self.dir: Path | None = None

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        with atomic_dir(self.out, overwrite=self.overwrite) as tmp:
            self.dir = tmp
            try:
                yield tmp
            finally:
                self.dir = None

    def finish(self, rejects=None, **fields: Any) -> dict[str, Any]:
        """The reject log and the manifest, in the directory :meth:`writing` gives."""
        if self.dir is None:
            raise RuntimeError("StageOutput.finish belongs inside `with stage.writing():`")
        if rejects is not None:
            rejects.write(self.dir / REJECTS)
            fields["rejected"] = rejects.summary()
        return write_manifest(self.dir, self.stage, **fields, timings_s=self.timer.total())
