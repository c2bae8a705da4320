"""User errors share one base, kgscale.errors.UserError, and the CLI catches
that base alone: every such error, listed or new, exits with status 2 and
"kgscale CMD: error: MESSAGE", never a traceback."""
from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kgscale
import kgscale.cli
from kgscale.errors import UserError

PACKAGE = Path(kgscale.__file__).resolve().parent
ROOT = PACKAGE.parent

# Every error class the CLI used to list in its tuple (kgscale.cli._user_errors),
# with the built-in base it must keep so that `except ValueError` (or OSError,
# RuntimeError, ...) elsewhere still catches it.
CLI_ERRORS = {
    ("kgscale.config", "ConfigError"): ValueError,
    ("kgscale.kg.sources.base", "SourceError"): ValueError,
    ("kgscale.kg.registry", "DatasetError"): ValueError,
    ("kgscale.kg.download", "DownloadError"): OSError,
    ("kgscale.kg.rejects", "RejectedInputError"): ValueError,
    ("kgscale.kg.snapshot", "SnapshotError"): FileNotFoundError,
    ("kgscale.output", "OutputExistsError"): FileExistsError,
    ("kgscale.models.backbone", "ModelLoadError"): ValueError,
    ("kgscale.eval.errors", "EvalInputError"): ValueError,
    ("kgscale.synth", "SynthInputError"): ValueError,
    ("kgscale.samples.kale", "RationalesError"): FileNotFoundError,
    ("kgscale.samples.rejects", "RejectedSampleError"): ValueError,
    ("kgscale.train", "TrainError"): RuntimeError,
    ("kgscale.serve.entity_index", "IndexMismatchError"): ValueError,
    ("kgscale.ray_session", "NoClusterError"): ConnectionError,
    ("kgscale.pipeline.storage", "StorageError"): RuntimeError,
    ("kgscale.output", "DiskFullError"): OSError,
}
# Subclasses of those, user errors through their parent.
INHERITED = {
    ("kgscale.kg.download", "ChecksumError"): OSError,
    ("kgscale.pipeline.run", "MissingStageError"): ValueError,
}
# Error classes that are deliberately not user errors: none reaches the CLI's catch.
NOT_USER_ERRORS = {
    # a remote store refused a write; `kgscale writeback` catches it and exits 1
    ("kgscale.complete.writeback", "WriteBackError"),
    # an HTTP refusal of the server (4xx/5xx body), handled by the ingress
    ("kgscale.serve.errors", "ApiError"),
    # one bad QA line; link_table records it as the row's status
    ("kgscale.synth.questions_qa", "QARowError"),
}


def _cls(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _error_classes() -> set[tuple[str, str]]:
    """(module, name) of every exception class named *Error defined under kgscale/."""
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.ClassDef) and n.name.endswith("Error") for n in ast.walk(tree)):
            modules.add(_module_name(path))
    found = set()
    for module in sorted(modules):
        for name, obj in vars(importlib.import_module(module)).items():
            if (inspect.isclass(obj) and obj.__module__ == module and name.endswith("Error")
                    and issubclass(obj, BaseException)):
                found.add((module, name))
    return found


@pytest.mark.parametrize("key", sorted(CLI_ERRORS) + sorted(INHERITED), ids=lambda k: k[1])
def test_cli_error_derives_from_user_error_and_keeps_its_builtin_base(key):
    cls = _cls(*key)
    builtin = {**CLI_ERRORS, **INHERITED}[key]
    assert issubclass(cls, UserError), f"{key[0]}.{key[1]} must derive from kgscale.errors.UserError"
    assert issubclass(cls, builtin), f"{key[0]}.{key[1]} must still be a {builtin.__name__}"


def test_every_error_class_is_decided():
    found = _error_classes()
    decided = set(CLI_ERRORS) | set(INHERITED) | NOT_USER_ERRORS | {("kgscale.errors", "UserError")}
    assert set(CLI_ERRORS) | set(INHERITED) <= found, "an expected error class is gone or renamed"
    undecided = sorted(found - decided)
    # A new error class: derive it from UserError (the CLI reports it) and list
    # it above, or list it in NOT_USER_ERRORS with where it is handled.
    assert not undecided, f"error classes neither user errors nor listed as not: {undecided}"
    for key in NOT_USER_ERRORS:
        assert not issubclass(_cls(*key), UserError), f"{key} is listed as not a user error"


def test_every_user_error_under_kgscale_is_listed():
    user = {k for k in _error_classes() if issubclass(_cls(*k), UserError)}
    assert user == set(CLI_ERRORS) | set(INHERITED) | {("kgscale.errors", "UserError")}


def test_cli_reexports_the_one_base():
    assert kgscale.cli.UserError is UserError
    assert not hasattr(kgscale.cli, "_user_errors")


def test_errors_module_imports_nothing_from_the_package():
    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module == "__future__", f"kgscale/errors.py imports from {node.module}"
        assert not isinstance(node, ast.Import), "kgscale/errors.py imports a module"
    code = "import sys, kgscale.errors; print(sorted(m for m in sys.modules if m.startswith('kgscale')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['kgscale', 'kgscale.errors']"


class BrandNewError(UserError, ValueError):
    """A user error the CLI was never told about."""


def test_a_new_user_error_is_reported_with_status_2(monkeypatch, capsys):
    def fails(args):
        raise BrandNewError(f"{args.dir}: this snapshot is the wrong shape")

    monkeypatch.setattr("kgscale.commands.info.run", fails)
    assert kgscale.cli.main(["info", "/some/snap"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "kgscale info: error: /some/snap: this snapshot is the wrong shape\n"
    assert captured.out == ""


def test_other_exceptions_are_not_swallowed(monkeypatch):
    def crashes(args):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr("kgscale.commands.info.run", crashes)
    with pytest.raises(RuntimeError, match="a bug"):
        kgscale.cli.main(["info", "/some/snap"])


def test_a_new_user_error_from_the_console_has_no_traceback():
    script = textwrap.dedent("""
        import sys
        import kgscale.commands.info
        from kgscale.cli import main
        from kgscale.errors import UserError

        class LateError(UserError, OSError):
            pass

        def fails(args):
            raise LateError(f"cannot read {args.dir}: it is a fifo")

        kgscale.commands.info.run = fails
        sys.exit(main(["info", "/tmp/pipe"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr == "kgscale info: error: cannot read /tmp/pipe: it is a fifo\n"
    assert "Traceback" not in r.stderr + r.stdout


def test_a_real_bad_input_exits_2_without_traceback(tmp_path):
    missing = tmp_path / "nosnap"
    r = subprocess.run([sys.executable, "-m", "kgscale.cli", "info", str(missing)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"kgscale info: error: snapshot not found: {missing}")
    assert "Traceback" not in r.stderr
