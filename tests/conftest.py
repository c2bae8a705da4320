"""Shared fixtures. ``tests/unit`` needs no Ray; ``tests/ray`` shares one local
Ray instance for the whole session (see tests/ray/conftest.py)."""
from __future__ import annotations

import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub here: fail fast, never hang
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout (CI puts it there); KGSCALE_SHARED overrides.
SHARED = Path(os.environ.get("KGSCALE_SHARED", ROOT.parent / "shared")) / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED / "wn18rr" / "train.txt").is_file():
        pytest.skip(f"shared datasets not found at {SHARED} (set KGSCALE_SHARED)")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Never read or write the user's ~/.cache/kgscale from tests.
    os.environ["KGSCALE_DATA_DIR"] = str(tmp_path_factory.mktemp("kgscale-cache"))
    os.environ["KGSCALE_EMBED_CACHE"] = str(tmp_path_factory.mktemp("kgscale-embed-cache"))
    os.environ.pop("KGSCALE_MIRROR", None)
    yield


def write_benchmark(directory: Path, train: str, valid: str = "", test: str = "", entities: str | None = None,
                    relations: str | None = None) -> Path:
    """A small benchmark directory from literal file contents."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        (directory / name).write_text(text, encoding="utf-8")
    (directory / "entities.tsv").write_text(entities if entities is not None else "id\tname\tdescription\n", encoding="utf-8")
    (directory / "relations.tsv").write_text(relations if relations is not None else "id\ttext\n", encoding="utf-8")
    return directory
