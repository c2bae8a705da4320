"""The dataset registry's real download path, against a real HTTP server on 127.0.0.1."""
import shutil

import pytest

from kgscale.kg import registry
from kgscale.kg.download import ChecksumError, DownloadError, fetch
from kgscale.output import file_sha256
from tests.http_fixtures import serve


@pytest.fixture()
def mirror(tmp_path, shared_datasets):
    root = tmp_path / "mirror"
    shutil.copytree(shared_datasets / "wn18rr", root / "wn18rr")
    return root


def _no_partials(directory):
    return [p.name for p in directory.rglob("*") if ".part-" in p.name or ".tmp-" in p.name]


def test_download_from_http_mirror_verifies_and_then_reuses_cache(tmp_path, mirror):
    cache = tmp_path / "cache"
    with serve(mirror) as server:
        path = registry.resolve("wn18rr", cache_dir=cache, mirror=server.url)
        assert sorted(server.requests) == sorted(f"/wn18rr/{f.name}" for f in registry.spec("wn18rr").files)
    for f in registry.spec("wn18rr").files:
        assert file_sha256(path / f.name) == f.sha256
    # the cache is used as it is: no mirror, no network needed
    assert registry.resolve("wn18rr", cache_dir=cache, mirror="") == path


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, mirror):
    (mirror / "wn18rr" / "valid.txt").write_text("00000001\t_hypernym\t00000002\n")
    cache = tmp_path / "cache"
    with serve(mirror) as server:
        with pytest.raises(ChecksumError, match=r"valid.txt: checksum mismatch: expected sha256 453ce72"):
            registry.resolve("wn18rr", cache_dir=cache, mirror=server.url)
    assert not (cache / "wn18rr" / "valid.txt").exists()
    assert _no_partials(cache) == []


def test_broken_transfer_is_retried_then_fails_with_no_partial_file(tmp_path, mirror):
    dest = tmp_path / "cache" / "train.txt"
    sha = file_sha256(mirror / "wn18rr" / "train.txt")
    with serve(mirror) as server:
        server.truncate.add("/wn18rr/train.txt")
        with pytest.raises(DownloadError, match=r"train.txt: download failed after 2 attempt\(s\)") as err:
            fetch(f"{server.url}/wn18rr/train.txt", dest, sha, retries=2)
        assert server.requests.count("/wn18rr/train.txt") == 2
        assert not isinstance(err.value, ChecksumError)
        # once the server behaves, the same call succeeds
        server.truncate.clear()
        fetch(f"{server.url}/wn18rr/train.txt", dest, sha)
    assert file_sha256(dest) == sha
    assert _no_partials(dest.parent) == []


def test_missing_file_on_server_is_not_retried(tmp_path, mirror):
    with serve(mirror) as server:
        with pytest.raises(DownloadError, match="404"):
            fetch(f"{server.url}/wn18rr/nope.txt", tmp_path / "x", "0" * 64, retries=3)
        assert server.requests == ["/wn18rr/nope.txt"]


def test_local_directory_mirror_and_errors(tmp_path, shared_datasets, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))
    assert (registry.resolve("wn18rr", cache_dir=cache) / "entities.tsv").is_file()
    # a corrupted cached file is reported, not silently used or replaced
    (cache / "wn18rr" / "relations.tsv").write_text("id\ttext\n")
    with pytest.raises(registry.DatasetError, match="does not match the registry's sha256"):
        registry.resolve("wn18rr", cache_dir=cache)
    with pytest.raises(registry.DatasetError, match="unknown dataset 'wn19'; known: arc_challenge, .*, wn18rr"):
        registry.resolve("wn19", cache_dir=cache)
    monkeypatch.delenv("KGSCALE_MIRROR")
    # split files in the cache, entity texts missing: they have no public home
    partial = tmp_path / "partial" / "wn18rr"
    partial.mkdir(parents=True)
    for name in ("train.txt", "valid.txt", "test.txt"):
        shutil.copy(shared_datasets / "wn18rr" / name, partial / name)
    with pytest.raises(registry.DatasetError, match="entities.tsv is not in the cache .* set KGSCALE_MIRROR"):
        registry.resolve("wn18rr", cache_dir=partial.parent, mirror="")


def test_qa_sets_resolve_to_their_file(tmp_path, shared_datasets):
    path = registry.resolve_file("commonsenseqa", cache_dir=tmp_path, mirror=str(shared_datasets))
    assert path == tmp_path / "qa" / "commonsenseqa.validation.jsonl"
    assert sum(1 for _ in open(path)) == 1221
    assert registry.resolve_reference("not/a/dataset.jsonl") == "not/a/dataset.jsonl"
