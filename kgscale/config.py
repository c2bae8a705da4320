"""Typed configuration: YAML files plus ``key=value`` overrides.

Every stage's settings are a pydantic model that forbids unknown keys, so a
typo in a YAML file or on the command line is an error that names the key,
never a silently ignored setting. Overrides use dotted paths
(``ingest.read_tasks=8``) and their values are parsed as YAML scalars, so
``true``, ``8`` and ``[a, b]`` mean what they look like.

Secrets never live in configs: a config names the *environment variable*
that holds one (``password_env: NEO4J_PASSWORD``) and :func:`secret_from_env`
reads it at the last moment.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kgscale.errors import UserError

M = TypeVar("M", bound=BaseModel)

# Keys that look like they hold a secret. A config that sets one is refused:
# secrets come from the environment only, so they never reach a manifest.
# A whole word, so that token *counts* and tokenizers (max_new_tokens,
# tokenizer) are not mistaken for secrets.
_SECRET_KEY = re.compile(r"(password|passwd|secret|api_?key|token)(?![a-z])")


class ConfigError(UserError, ValueError):
    """A configuration problem; the message names the key or the file."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


STAGE_PATH = "stage_path"


def stage_path(role: str, default: Any = ..., **kw: Any) -> Any:
    """A stage config's field that says where the stage reads (``role="input"``:
    another stage's output, or a source's files) or writes (``"output"``).
    ``kgscale run`` fills an earlier stage's directory in from its run
    directory, and they stay out of the stage's fingerprint view: where a
    result lies does not change what it holds (an input's content is in its
    own stage's fingerprint, a source's in the stamp of its files)."""
    if role not in ("input", "output"):
        raise ValueError(f"stage_path: role must be 'input' or 'output', not {role!r}")
    return Field(default, json_schema_extra={STAGE_PATH: role}, **kw)


def runtime_setting(default: Any = ..., **kw: Any) -> Any:
    """A stage config's field that says where the stage runs (the Ray
    cluster it joins), not what it computes: left out of the fingerprint
    view like a :func:`stage_path`, so the same stage run on another cluster
    is the same result."""
    return Field(default, json_schema_extra={STAGE_PATH: "runtime"}, **kw)


def fingerprint_view(cfg: BaseModel) -> dict[str, Any]:
    """What of a stage's config decides its output: every setting except its
    :func:`stage_path` and :func:`runtime_setting` fields and ``overwrite``,
    derived from the model so that no stage keeps a list of its own."""
    skip: dict[str, Any] = {"overwrite": True}
    skip.update(_stage_paths(type(cfg)))
    return cfg.model_dump(mode="json", exclude=skip)


def _stage_paths(model: type[BaseModel]) -> dict[str, Any]:
    """The :func:`stage_path` fields of ``model`` and of the models nested in
    it, as an ``exclude`` mapping for ``model_dump``."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if isinstance(field.json_schema_extra, dict) and STAGE_PATH in field.json_schema_extra:
            found[name] = True
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            if nested := _stage_paths(field.annotation):
                found[name] = nested
    return found


def secret_from_env(var: str, *, what: str) -> str:
    """Return the secret held in environment variable ``var``.

    ``what`` says what the secret is for, so the error can say which setting
    to provide without ever echoing a value.
    """
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{what}: environment variable {var} is not set")
    return value


def _check_no_secrets(data: Any, path: str = "") -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{path}.{key}" if path else str(key)
            lowered = str(key).lower()
            if _SECRET_KEY.search(lowered) and not lowered.endswith("_env"):
                raise ConfigError(
                    f"{dotted}: secrets may not be written in configs; "
                    f"set {key}_env to the name of an environment variable instead"
                )
            _check_no_secrets(value, dotted)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            _check_no_secrets(item, f"{path}[{i}]")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping (in place).

    Values are parsed as YAML so types come out as a user would expect.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def _describe(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"{loc}: required key is missing")
        else:
            got = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(got, (dict, list)):
                shown = f" (got {got!r})"
            else:  # a whole section's own check (a model validator) says what is wrong with it
                shown = "" if err["type"] == "value_error" else f" (got {type(got).__name__})"
            lines.append(f"{msg}{shown}" if loc == "(top level)" else f"{loc}: {msg}{shown}")
    return "; ".join(lines)


def build(model: type[M], data: dict[str, Any], *, source: str = "config", section: str = "") -> M:
    """Validate ``data`` into ``model``; errors name every offending key
    (prefixed with ``section``, the dotted path of ``data`` in its file)."""
    _check_no_secrets(data, section)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, section)}") from None

