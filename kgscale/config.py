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
from pydantic import BaseModel, ConfigDict, ValidationError

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
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            lines.append(f"{loc}: {err['msg']} (got {shown})")
    return "; ".join(lines)


def build(model: type[M], data: dict[str, Any], *, source: str = "config", section: str = "") -> M:
    """Validate ``data`` into ``model``; errors name every offending key
    (prefixed with ``section``, the dotted path of ``data`` in its file)."""
    _check_no_secrets(data, section)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, section)}") from None


def load(model: type[M], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> M:
    """Load a config: the YAML file (if any), then the overrides, then validation."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, list(overrides or []))
    return build(model, data, source=str(path) if path else "overrides")
