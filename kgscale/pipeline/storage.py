"""Where a run's stage directories live: a local directory, or a URI that a
pyarrow filesystem opens (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``,
``file://``).

Every stage reads and writes local files (Ray Data, Ray Train and Hugging
Face all want paths), so with a URI the run works in a local directory
(``run.local_dir``, default under ``~/.cache/kgscale/runs``) and:

- each stage that finishes is copied up to ``URI/STAGE``;
- a stage whose copy in the URI has the current fingerprint, but whose local
  copy does not (a new machine, a new cluster), is copied down instead of
  being run again.

A stage's files go up before its ``manifest.json``, and the manifest holds
the fingerprint, so an upload that was cut short reads as not finished and
the stage runs again. Credentials come from the environment the way each
filesystem reads them (``AWS_ACCESS_KEY_ID`` ..., ``GOOGLE_APPLICATION_CREDENTIALS``);
credentials written into the URI itself are never printed.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from kgscale.config import ConfigError
from kgscale.errors import UserError
from kgscale.output import MANIFEST, fsync_dir, fsync_tree

COPY_BUFFER = 8 << 20


def is_uri(value: str) -> bool:
    return "://" in value


def default_local_dir(uri: str) -> Path:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "kgscale" / "runs" / digest


class StorageError(UserError, RuntimeError):
    """Reading or writing the run's URI failed; the message names the URI."""


class RunStorage:
    """The run directory: ``local`` is where stages work; ``remote`` (None for
    a plain local run) is the URI each finished stage is kept in."""

    def __init__(self, dir: str, local_dir: Path | None = None) -> None:
        self.remote = dir if is_uri(dir) else None
        if self.remote is None:
            self.local = Path(dir)
            self.fs = self.base = None
            return
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            self.fs, self.base = pafs.FileSystem.from_uri(dir)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as exc:
            # pyarrow's message quotes the URI whole, credentials included
            raise ConfigError(f"run.dir: cannot open {_shown(dir)}: {_scrub(str(exc))}") from None
        self.base = self.base.rstrip("/")
        self.local = Path(local_dir) if local_dir else default_local_dir(dir)

    def __str__(self) -> str:
        return _shown(self.remote) if self.remote else str(self.local)

    def rel(self, out: Path) -> str:
        """Where ``out`` (under the local copy) lies in the run directory."""
        return Path(out).relative_to(self.local).as_posix()

    def shown(self, out: Path) -> str:
        """``out`` as the user should read it: its place in the URI, or the path."""
        return f"{self}/{self.rel(out)}" if self.remote else str(out)

    def _remote_path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def check(self) -> None:
        """Fail early, before any stage runs, when the URI cannot be written."""
        if self.remote is None:
            return
        try:
            self.fs.create_dir(self.base, recursive=True)
            probe = self._remote_path(".kgscale-write-check")
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise StorageError(f"run.dir: cannot write to {self}: {exc}") from None

    def remote_fingerprint(self, rel: str) -> str | None:
        """The fingerprint in the URI's copy of stage ``rel`` (None: not finished there)."""
        if self.remote is None:
            return None
        try:
            with self.fs.open_input_stream(self._remote_path(f"{rel}/{MANIFEST}")) as f:
                return json.loads(f.read().decode("utf-8")).get("fingerprint")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {self}/{rel}/{MANIFEST}: {exc}") from None

    def push(self, rel: str) -> None:
        """Copy local stage ``rel`` up, replacing what the URI held; the manifest last."""
        if self.remote is None:
            return
        import pyarrow.fs as pafs

        src = self.local / rel
        dest = self._remote_path(rel)
        try:
            if self.fs.get_file_info(dest).type != pafs.FileType.NotFound:
                self.fs.delete_dir(dest)
            files = sorted(p for p in src.rglob("*") if p.is_file())
            manifest = src / MANIFEST
            for path in [p for p in files if p != manifest] + ([manifest] if manifest.is_file() else []):
                self._upload(path, f"{dest}/{path.relative_to(src).as_posix()}")
        except OSError as exc:
            raise StorageError(f"cannot copy {src} to {self}/{rel}: {exc}") from None

    def push_file(self, local: Path) -> None:
        """Copy one file at the top of the local run directory up (the summary, the plot)."""
        if self.remote is None or not local.is_file():
            return
        try:
            self._upload(local, self._remote_path(local.relative_to(self.local).as_posix()))
        except OSError as exc:
            raise StorageError(f"cannot copy {local} to {self}: {exc}") from None

    def pull(self, rel: str) -> None:
        """Replace local stage ``rel`` with the URI's copy."""
        import pyarrow.fs as pafs

        dest = self.local / rel
        src = self._remote_path(rel)
        tmp = dest.with_name(dest.name + ".pulling")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for info in self.fs.get_file_info(pafs.FileSelector(src, recursive=True)):
                if info.type != pafs.FileType.File:
                    continue
                target = confined(tmp, info.path[len(src):].lstrip("/"), f"{self}/{rel}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open_input_stream(info.path) as fin, open(target, "wb") as fout:
                    shutil.copyfileobj(fin, fout, COPY_BUFFER)
            fsync_tree(tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StorageError(f"cannot copy {self}/{rel} here: {_scrub(str(exc))}") from None
        except StorageError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dest)
        fsync_dir(dest.parent)

    def _upload(self, path: Path, dest: str) -> None:
        parent = dest.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        with open(path, "rb") as fin, self.fs.open_output_stream(dest) as fout:
            shutil.copyfileobj(fin, fout, COPY_BUFFER)


def confined(root: Path, rel: str, where: str) -> Path:
    """``root / rel``, refused unless it stays inside ``root``: an object key
    with ``../`` (or an absolute one) would otherwise be written wherever it
    pointed."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"{where}: refusing the object {rel[:200]!r}: its path leaves the run directory")
    return root.joinpath(*parts)


def _scrub(text: str) -> str:
    """Credentials out of any URI in ``text`` (``scheme://user:secret@host``)."""
    return re.sub(r"(//)[^/@\s]*@", r"\1", text)


def _shown(uri: str) -> str:
    """A URI as it may be printed: no credentials before the host
    (``s3://KEY:SECRET@bucket/...``) and no query string."""
    scheme, sep, rest = uri.split("?", 1)[0].partition("://")
    if not sep:
        return scheme
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
