"""The dataset registry, ``load_dataset`` and the download cache.

Downloads are served by a local ``http.server`` from a temporary folder (the ``server`` fixture
of ``conftest.py``), with toy entries put into the registry, so nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from rnnreg.data import (DATASET_NAMES, REGISTRY, DataError, DataFile, DatasetSpec, DownloadError,
                         default_cache_dir, describe, fetch, load_dataset)
from rnnreg.data.archive import extract_members

from helpers import shared_data

TOY_TEXTS = {"train": "the cat sat\non the mat\n", "valid": "the mat\n", "test": "a cat\n"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toy_files(folder: str = "toy") -> tuple[DataFile, ...]:
    return tuple(DataFile(f"toy.{s}.txt", f"{folder}/toy.{s}.txt", sha256=sha256(t.encode()),
                          size=len(t.encode())) for s, t in TOY_TEXTS.items())


def write_zip(path: Path, members: dict[str, str]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path.read_bytes()


def toy_members(prefix: str = "toy/") -> dict[str, str]:
    return {f"{prefix}toy.{s}.txt": t for s, t in TOY_TEXTS.items()}


def register(monkeypatch, **fields) -> DatasetSpec:
    spec = DatasetSpec(**{"name": "toy", "level": "word", "description": "a toy corpus", **fields})
    monkeypatch.setitem(REGISTRY, "toy", spec)
    return spec


# --- the registry -------------------------------------------------------------------------------

def test_every_benchmark_is_registered_and_described():
    expected = {"ptb", "ptb-char", "wikitext-2", "wikitext-103", "enwik8", "text8", "tinyshakespeare"}
    assert set(DATASET_NAMES) == expected
    help_text = describe()
    assert all(name in help_text for name in expected)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entries_are_well_formed(name):
    spec = REGISTRY[name]
    assert spec.level in ("word", "char") and len(spec.files) in (1, 3)
    assert spec.urls and all(u.startswith(("http://", "https://")) for u in spec.urls)
    if len(spec.files) == 1:
        assert (spec.heldout > 0) != (spec.heldout_fraction > 0)
    for f in spec.files:
        assert (f.member is not None) == (spec.archive is not None)
        for digest, length in ((f.sha256, 64), (f.sha1, 40)):
            assert digest is None or (len(digest) == length and int(digest, 16) >= 0)


@pytest.mark.parametrize("name, folder", [("ptb", "ptb"), ("ptb-char", "ptb_char"),
                                          ("wikitext-2", "wikitext-2"),
                                          ("tinyshakespeare", "tinyshakespeare")])
def test_registered_checksums_agree_with_the_shared_copies(name, folder):
    sums = dict(reversed(line.split()) for line in
                (shared_data() / folder / "SHA256SUMS").read_text().splitlines())
    for f in REGISTRY[name].files:
        assert f.sha256 == sums[f.name]
        assert f.size == (shared_data() / folder / f.name).stat().st_size


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNREG_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("RNNREG_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "rnnreg"


# --- loading without a download -----------------------------------------------------------------

def test_tinyshakespeare_ships_inside_the_package_and_splits_90_5_5():
    packaged = resources.files("rnnreg.data").joinpath("tinyshakespeare").joinpath("input.txt")
    raw = packaged.read_bytes()
    assert sha256(raw) == REGISTRY["tinyshakespeare"].files[0].sha256
    corpus = load_dataset("tinyshakespeare")
    held = len(raw) * 5 // 100
    assert (corpus.valid.numel(), corpus.test.numel()) == (held, held)
    assert corpus.train.numel() == len(raw) - 2 * held
    text = raw.decode("utf-8")
    assert len(corpus.vocab) == len(set(text[: len(raw) - 2 * held]))  # closed: no <unk> needed
    decoded = "".join(corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.valid)
                      + corpus.vocab.decode(corpus.test))
    assert decoded == text


def test_a_registered_dataset_loads_from_a_local_folder_with_its_checksums(caplog):
    with caplog.at_level(logging.WARNING):
        corpus = load_dataset("ptb", path=shared_data() / "ptb")
    assert corpus.name == "ptb" and len(corpus.vocab) == 10_000
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (929_589, 73_760,
                                                                                 82_430)
    assert "differs" not in caplog.text


def test_a_local_copy_that_differs_is_loaded_with_a_warning(tmp_path, caplog):
    for s, t in TOY_TEXTS.items():
        (tmp_path / f"ptb.{s}.txt").write_text(t)
    with caplog.at_level(logging.WARNING):
        corpus = load_dataset("ptb", path=tmp_path)
    assert corpus.train.numel() == 8 and "differs from the published ptb file" in caplog.text


def test_a_local_folder_in_the_awd_layout_is_accepted(tmp_path):
    for s, t in TOY_TEXTS.items():
        (tmp_path / f"{s}.txt").write_text(t)
    corpus = load_dataset("ptb", path=tmp_path)
    assert corpus.name == "ptb" and corpus.valid.numel() == 3


def test_a_local_folder_without_the_files_names_them(tmp_path):
    with pytest.raises(DataError, match="expected ptb.train.txt ptb.valid.txt ptb.test.txt"):
        load_dataset("ptb", path=tmp_path)
    with pytest.raises(DataError, match="expected enwik8$"):
        load_dataset("enwik8", path=tmp_path)


def test_a_folder_path_is_loaded_as_a_user_corpus(tmp_path):
    for s, t in TOY_TEXTS.items():
        (tmp_path / f"{s}.txt").write_text(t)
    assert load_dataset(tmp_path).level == "word"
    assert load_dataset(str(tmp_path), level="char").train.numel() == len(TOY_TEXTS["train"])
    with pytest.raises(ValueError, match="path is for a registered"):
        load_dataset(tmp_path, path=tmp_path)


def test_unknown_names_and_wrong_levels_are_refused():
    with pytest.raises(DataError, match="unknown dataset 'ptb2'.*ptb, ptb-char"):
        load_dataset("ptb2")
    with pytest.raises(ValueError, match="word-level"):
        load_dataset("ptb", level="char")


def test_no_cache_and_no_download_says_how_to_provide_the_files(tmp_path):
    with pytest.raises(DataError, match=r"data.path=DIR \(holding wiki.train.tokens"):
        load_dataset("wikitext-2", cache_dir=tmp_path, download=False)


# --- fetch --------------------------------------------------------------------------------------

def test_fetch_verifies_the_checksum_and_leaves_no_temporary_file(server, tmp_path):
    url, root = server
    (root / "f.bin").write_bytes(b"payload" * 1000)
    dest = fetch(f"{url}/f.bin", tmp_path / "cache" / "f.bin", sha256(b"payload" * 1000), size=7000)
    assert dest.read_bytes() == b"payload" * 1000
    assert os.listdir(tmp_path / "cache") == ["f.bin"]


def test_a_checksum_mismatch_is_refused_and_nothing_stays_in_the_cache(server, tmp_path):
    url, root = server
    (root / "f.bin").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch.*discarded"):
        fetch(f"{url}/f.bin", cache / "f.bin", sha256(b"original"))
    assert os.listdir(cache) == []
    with pytest.raises(DataError, match="gave 8 bytes, expected 9"):
        fetch(f"{url}/f.bin", cache / "f.bin", size=9)
    assert os.listdir(cache) == []


def test_an_unknown_checksum_is_logged_for_the_record(server, tmp_path, caplog):
    url, root = server
    (root / "f.bin").write_bytes(b"abc")
    with caplog.at_level(logging.INFO, logger="rnnreg.data.download"):
        fetch(f"{url}/f.bin", tmp_path / "f.bin")
    assert sha256(b"abc") in caplog.text


def test_fetch_reads_file_urls(tmp_path):
    source = tmp_path / "src.txt"
    source.write_bytes(b"local")
    assert fetch(source.as_uri(), tmp_path / "out.txt", sha256(b"local")).read_bytes() == b"local"


def test_http_errors_and_refused_connections_are_download_errors(server, tmp_path, closed_port):
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{url}/missing.zip", tmp_path / "x")
    with pytest.raises(DownloadError) as info:
        fetch(f"http://127.0.0.1:{closed_port}/x.zip", tmp_path / "x", timeout=5)
    assert info.value.url.endswith("/x.zip") and not (tmp_path / "x").exists()


# --- load_dataset downloads ---------------------------------------------------------------------

def test_a_zip_is_downloaded_extracted_verified_and_then_served_from_the_cache(server, tmp_path,
                                                                               monkeypatch):
    url, root = server
    archive = write_zip(root / "toy.zip", toy_members())
    register(monkeypatch, urls=(f"{url}/toy.zip",), files=toy_files(), archive="toy.zip",
             archive_sha256=sha256(archive), archive_size=len(archive))
    corpus = load_dataset("toy", cache_dir=tmp_path)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (8, 3, 3)
    assert sorted(os.listdir(tmp_path / "toy")) == ["toy.test.txt", "toy.train.txt",
                                                   "toy.valid.txt"]  # the archive is gone
    (root / "toy.zip").unlink()
    again = load_dataset("toy", cache_dir=tmp_path, download=False)
    assert again.vocab == corpus.vocab


def test_tgz_members_with_a_leading_dot_slash_are_found(server, tmp_path, monkeypatch):
    url, root = server
    with tarfile.open(root / "toy.tgz", "w:gz") as tf:
        for name, text in toy_members("./simple/data/").items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    register(monkeypatch, urls=(f"{url}/toy.tgz",), files=toy_files("./simple/data"),
             archive="toy.tgz")
    assert load_dataset("toy", cache_dir=tmp_path).test.numel() == 3


def test_a_mirror_is_tried_when_the_first_url_fails(server, tmp_path, monkeypatch, closed_port):
    url, root = server
    write_zip(root / "toy.zip", toy_members())
    register(monkeypatch, urls=(f"http://127.0.0.1:{closed_port}/toy.zip", f"{url}/toy.zip"),
             files=toy_files(), archive="toy.zip")
    assert load_dataset("toy", cache_dir=tmp_path).valid.numel() == 3


def test_without_network_the_message_says_how_to_provide_the_files(tmp_path, monkeypatch,
                                                                    closed_port):
    first, second = (f"http://127.0.0.1:{closed_port}/{n}/toy.zip" for n in ("a", "b"))
    register(monkeypatch, urls=(first, second), files=toy_files(), archive="toy.zip")
    with pytest.raises(DataError) as info:
        load_dataset("toy", cache_dir=tmp_path)
    text = str(info.value)
    assert text.startswith(f"could not download toy from {first} (")
    assert f" or {second} (" in text
    assert text.endswith("download it yourself or pass a local folder: data.path=DIR "
                         "(holding toy.train.txt toy.valid.txt toy.test.txt)")


def test_a_bad_archive_checksum_leaves_nothing_in_the_cache(server, tmp_path, monkeypatch):
    url, root = server
    write_zip(root / "toy.zip", toy_members())
    register(monkeypatch, urls=(f"{url}/toy.zip",), files=toy_files(), archive="toy.zip",
             archive_sha256=sha256(b"something else"))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("toy", cache_dir=tmp_path)
    assert os.listdir(tmp_path / "toy") == []


def test_an_extracted_file_with_the_wrong_checksum_is_removed(server, tmp_path, monkeypatch):
    url, root = server
    members = toy_members()
    members["toy/toy.valid.txt"] = "the hat\n"  # same size, other bytes
    write_zip(root / "toy.zip", members)
    register(monkeypatch, urls=(f"{url}/toy.zip",), files=toy_files(), archive="toy.zip")
    with pytest.raises(DataError, match="toy.valid.txt from toy.zip has sha256"):
        load_dataset("toy", cache_dir=tmp_path)
    assert not (tmp_path / "toy" / "toy.valid.txt").exists()


def test_a_single_byte_level_file_is_split_into_the_last_two_blocks(server, tmp_path, monkeypatch):
    url, root = server
    raw = bytes(range(256)) + b"\x00\xff\n" * 10
    (root / "blob").write_bytes(raw)
    register(monkeypatch, level="char", urls=(f"{url}/blob",), encoding="latin-1", heldout=7,
             files=(DataFile("blob", sha256=sha256(raw), size=len(raw)),))
    corpus = load_dataset("toy", cache_dir=tmp_path)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (len(raw) - 14, 7, 7)
    assert "".join(corpus.vocab.decode(corpus.test)).encode("latin-1") == raw[-7:]


def test_extract_members_reports_missing_members_and_broken_archives(tmp_path):
    write_zip(tmp_path / "a.zip", {"x.txt": "x"})
    with pytest.raises(DataError, match="has no member y.txt"):
        extract_members(tmp_path / "a.zip", {"y.txt": tmp_path / "y"})
    (tmp_path / "b.zip").write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="not a readable zip or tar archive"):
        extract_members(tmp_path / "b.zip", {"x.txt": tmp_path / "x"})
