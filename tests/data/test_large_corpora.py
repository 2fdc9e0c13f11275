"""WikiText-103, enwik8 and text8 through the real download path, and the id cache.

Each download is a small archive with the canonical layout (``wikitext-103-v1.zip`` holding
``wikitext-103/wiki.{train,valid,test}.tokens``, ``enwik8.zip`` holding ``enwik8``, ``text8.zip``
holding ``text8``), served by the local HTTP server of ``conftest.py``. The registry entry is the
real one with only its URL, sizes, checksums and (for the single files) the held-out size
replaced, so its member names, checksum kinds, encoding and level are the ones under test. The
id cache is switched on for these small files by lowering ``id_cache.MIN_BYTES``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import zipfile
from pathlib import Path

import pytest
import torch

from rnnreg.data import REGISTRY, DataError, build_corpus, file_corpus, id_cache, load_corpus, load_dataset
from rnnreg.data.file_corpus import cut

WT_TEXTS = {"train": " = Title = \n\n a b <unk> c \n a , b .\n", "valid": " a b \n\n", "test": " c a \n"}


def digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def serve_zip(root: Path, archive: str, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(root / archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return (root / archive).read_bytes()


def register(monkeypatch, name: str, url: str, archive: bytes, contents: list[bytes], **fields):
    """The real entry of ``name``, pointed at ``url`` and given this archive's and files' sums,
    each file's checksum of the kind the registry checks for it."""
    spec = REGISTRY[name]
    files = tuple(dataclasses.replace(f, size=len(data), **{kind: digest(data, kind) for kind in
                                                           ("sha256", "sha1") if getattr(f, kind)})
                  for f, data in zip(spec.files, contents))
    spec = dataclasses.replace(spec, urls=(url,), archive_sha256=digest(archive, "sha256"),
                               archive_size=len(archive), files=files, **fields)
    monkeypatch.setitem(REGISTRY, name, spec)
    return spec


@pytest.fixture
def cache_everything(monkeypatch):
    monkeypatch.setattr(id_cache, "MIN_BYTES", 0)


@pytest.fixture
def tokenizer_calls(monkeypatch) -> list[str]:
    """The files the streamed tokenizers are called on."""
    calls: list[str] = []
    for attr in ("word_ids", "byte_ids"):
        real = getattr(file_corpus, attr)

        def spy(path, *args, real=real, **kwargs):
            calls.append(Path(path).name)
            return real(path, *args, **kwargs)
        monkeypatch.setattr(file_corpus, attr, spy)
    return calls


def assert_same(a, b) -> None:
    assert a.vocab == b.vocab
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(a, split), getattr(b, split)), split


def mapped(tensor: torch.Tensor) -> str | None:
    """The file that the memory of ``tensor`` is mapped from (None: anonymous memory), read from
    the process's memory map (a private mapping has no ``storage.filename``)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux)")
    address = tensor.data_ptr()
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) == 6 and fields[5].startswith("/") else None
    return None


# --- the three downloads ------------------------------------------------------------------------

def test_wikitext103_zip_downloads_verifies_and_maps_its_ids_on_the_next_load(
        server, tmp_path, monkeypatch, cache_everything, tokenizer_calls):
    url, root = server
    contents = [WT_TEXTS[s].encode() for s in ("train", "valid", "test")]
    archive = serve_zip(root, "wikitext-103-v1.zip",
                        {f"wikitext-103/wiki.{s}.tokens": c for s, c in zip(WT_TEXTS, contents)})
    spec = register(monkeypatch, "wikitext-103", f"{url}/wikitext-103-v1.zip", archive, contents)
    assert all(f.sha1 and not f.sha256 for f in spec.files)  # the registry's kind of checksum
    cache = tmp_path / "cache"
    first = load_dataset("wikitext-103", cache_dir=cache)
    assert_same(first, build_corpus(*WT_TEXTS.values(), level="word", name="wt103"))
    assert first.train.numel() == 15 and first.sources[0] == str(cache / "wikitext-103" / "wiki.train.tokens")
    assert sorted(os.listdir(cache / "wikitext-103")) == ["ids", "wiki.test.tokens", "wiki.train.tokens",
                                                          "wiki.valid.tokens"]
    assert tokenizer_calls == ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]
    (root / "wikitext-103-v1.zip").unlink()
    again = load_dataset("wikitext-103", cache_dir=cache, download=False)
    assert tokenizer_calls == ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]  # no more
    assert_same(again, first)
    assert mapped(again.train).startswith(str(cache / "wikitext-103" / "ids"))
    assert again.train.dtype == torch.long and again.sources == first.sources


@pytest.mark.parametrize("name, symbols", [
    ("enwik8", bytes(range(256)) * 4 + "<page>Zürich</page>\n".encode("utf-8") * 20),
    ("text8", b" anarchism originated as a term of abuse first used against early working class" * 6),
])
def test_a_single_file_download_is_cut_into_its_last_two_heldout_blocks(
        server, tmp_path, monkeypatch, cache_everything, name, symbols):
    url, root = server
    archive = serve_zip(root, f"{name}.zip", {name: symbols})  # the member is the bare name
    spec = register(monkeypatch, name, f"{url}/{name}.zip", archive, [symbols], heldout=37)
    corpus = load_dataset(name, cache_dir=tmp_path)
    n = len(symbols)
    assert (corpus.train.numel(), corpus.valid.numel(), corpus.test.numel()) == (n - 74, 37, 37)
    pieces = (symbols[:n - 74], symbols[n - 74:n - 37], symbols[n - 37:])
    for ids, piece in zip((corpus.train, corpus.valid, corpus.test), pieces):
        assert "".join(corpus.vocab.decode(ids)).encode(spec.encoding) == piece
    text = symbols.decode(spec.encoding)
    expected = build_corpus(*(p.decode(spec.encoding) for p in pieces), level="char", name=name)
    assert_same(corpus, expected)
    assert len(corpus.vocab) == len(set(text[:n - 74])) + ("<unk>" in corpus.vocab)
    assert corpus.sources == tuple(f"{tmp_path / name / name} ({s} part)" for s in ("train", "valid", "test"))
    assert mapped(corpus.test) is not None


@pytest.mark.parametrize("name", ["enwik8", "text8"])
def test_the_registered_split_is_90m_5m_5m(name):
    spec = REGISTRY[name]
    assert spec.files[0].size == 100_000_000 and spec.level == "char"
    assert cut(spec.files[0].size, name, spec.heldout, spec.heldout_fraction) == (90_000_000, 5_000_000)


def test_a_file_too_short_for_its_heldout_blocks_is_refused(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 10)
    with pytest.raises(DataError, match="has 10 symbols, too few to hold out 2 x 5"):
        file_corpus.load_single_file(tmp_path / "f", level="char", name="f", heldout=5)


def test_a_wrong_archive_checksum_leaves_nothing_in_the_cache(server, tmp_path, monkeypatch, caplog):
    url, root = server
    archive = serve_zip(root, "enwik8.zip", {"enwik8": b"abc" * 100})
    spec = register(monkeypatch, "enwik8", f"{url}/enwik8.zip", archive, [b"abc" * 100], heldout=10)
    monkeypatch.setitem(REGISTRY, "enwik8", dataclasses.replace(spec, archive_sha256="0" * 64))
    with pytest.raises(DataError) as info:
        load_dataset("enwik8", cache_dir=tmp_path)
    assert str(info.value).startswith(f"checksum mismatch for {url}/enwik8.zip: sha256 ")
    assert str(info.value).endswith("expected " + "0" * 64 + "; the download was discarded")
    assert os.listdir(tmp_path / "enwik8") == []


def test_a_wrong_member_checksum_removes_every_extracted_file(server, tmp_path, monkeypatch):
    url, root = server
    contents = [WT_TEXTS[s].encode() for s in ("train", "valid", "test")]
    archive = serve_zip(root, "wikitext-103-v1.zip",
                        {f"wikitext-103/wiki.{s}.tokens": c for s, c in zip(WT_TEXTS, contents)})
    spec = register(monkeypatch, "wikitext-103", f"{url}/wikitext-103-v1.zip", archive, contents)
    files = list(spec.files)
    files[1] = dataclasses.replace(files[1], sha1="f" * 40)
    monkeypatch.setitem(REGISTRY, "wikitext-103", dataclasses.replace(spec, files=tuple(files)))
    with pytest.raises(DataError, match=r"wikitext-103: wiki.valid.tokens from wikitext-103-v1.zip "
                                        r"has sha1 [0-9a-f]{40}, expected f{40}; the download was removed"):
        load_dataset("wikitext-103", cache_dir=tmp_path)
    assert os.listdir(tmp_path / "wikitext-103") == []


# --- the id cache -------------------------------------------------------------------------------

def three_files(folder: Path, texts=WT_TEXTS) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = [folder / f"wiki.{s}.tokens" for s in texts]
    for path, text in zip(paths, texts.values()):
        path.write_text(text, encoding="utf-8")
    return paths


def entries(folder: Path) -> list[str]:
    return sorted(p.name.split(".", 1)[1] for p in folder.iterdir())


def test_a_changed_source_file_invalidates_the_cached_ids(tmp_path, cache_everything, tokenizer_calls):
    paths, ids = three_files(tmp_path / "src"), tmp_path / "ids"
    first = load_corpus(*paths, level="word", name="x", cache_folder=ids)
    assert entries(ids) == ["json", "test.i64", "train.i64", "valid.i64"]
    paths[0].write_text(WT_TEXTS["train"] + " new words\n", encoding="utf-8")
    os.utime(paths[0], ns=(1, 1))  # a new mtime even where the clock is coarse
    second = load_corpus(*paths, level="word", name="x", cache_folder=ids)
    assert len(tokenizer_calls) == 6 and len(second.vocab) == len(first.vocab) + 2
    assert_same(second, load_corpus(*paths, level="word", name="x"))
    assert entries(ids) == ["json", "test.i64", "train.i64", "valid.i64"]  # the stale entry is gone


def test_writing_into_a_mapped_tensor_leaves_the_cache_intact(tmp_path, cache_everything):
    paths, ids = three_files(tmp_path / "src"), tmp_path / "ids"
    load_corpus(*paths, level="word", name="x", cache_folder=ids)
    mapped_corpus = load_corpus(*paths, level="word", name="x", cache_folder=ids)
    original = mapped_corpus.train.clone()
    mapped_corpus.train.fill_(0)  # a private mapping: copy on write
    assert torch.equal(load_corpus(*paths, level="word", name="x", cache_folder=ids).train, original)


def test_a_damaged_entry_is_rebuilt_with_a_warning(tmp_path, cache_everything, caplog):
    paths, ids = three_files(tmp_path / "src"), tmp_path / "ids"
    load_corpus(*paths, level="word", name="x", cache_folder=ids)
    expected = load_corpus(*paths, level="word", name="x")  # in memory: the file is cut below
    train_ids = next(ids.glob("*.train.i64"))
    train_ids.write_bytes(train_ids.read_bytes()[:-8])
    with caplog.at_level(logging.WARNING, logger="rnnreg.data.id_cache"):
        again = load_corpus(*paths, level="word", name="x", cache_folder=ids)
    assert "unusable id cache entry" in caplog.text and "expected 120" in caplog.text
    assert_same(again, expected)
    assert train_ids.stat().st_size == 8 * expected.train.numel()


def test_an_unwritable_cache_folder_keeps_the_ids_in_memory(tmp_path, cache_everything, caplog):
    paths = three_files(tmp_path / "src")
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="rnnreg.data.id_cache"):
        corpus = load_corpus(*paths, level="word", name="x", cache_folder=blocked / "ids")
    assert "cannot write the id cache" in caplog.text and mapped(corpus.train) is None
    assert_same(corpus, load_corpus(*paths, level="word", name="x"))


def test_a_refused_file_leaves_no_ids_behind(tmp_path, cache_everything):
    paths, ids = three_files(tmp_path / "src", {**WT_TEXTS, "test": " \n\n"}), tmp_path / "ids"
    with pytest.raises(DataError, match="wiki.test.tokens has no tokens"):
        load_corpus(*paths, level="word", name="x", cache_folder=ids)
    assert os.listdir(ids) == []


def test_small_corpora_are_not_cached(tmp_path):
    paths, ids = three_files(tmp_path / "src"), tmp_path / "ids"
    corpus = load_corpus(*paths, level="word", name="x", cache_folder=ids)
    assert not ids.exists() and mapped(corpus.train) is None


def test_a_users_folder_is_read_only_and_its_ids_are_cached_in_the_cache_folder(
        tmp_path, cache_everything, tokenizer_calls):
    user = tmp_path / "my wikitext"
    three_files(user)
    before = sorted(os.listdir(user))
    cache = tmp_path / "cache"
    first = load_dataset("wikitext-103", path=user, cache_dir=cache)
    again = load_dataset("wikitext-103", path=user, cache_dir=cache)
    assert sorted(os.listdir(user)) == before and len(tokenizer_calls) == 3
    assert_same(again, first)
    (local,) = os.listdir(cache / "wikitext-103")
    assert local.startswith("ids-local-")
    assert mapped(again.valid).startswith(str(cache / "wikitext-103" / local))


def test_utf8_chars_of_several_bytes_are_decoded_uncached_and_latin1_bytes_streamed(
        tmp_path, cache_everything):
    texts = {"train": "caf\u00e9 a\n", "valid": "a\n", "test": "caf\u00e9\n"}
    paths, ids = three_files(tmp_path / "src", texts), tmp_path / "ids"
    utf8 = load_corpus(*paths, level="char", name="x", cache_folder=ids)
    latin1 = load_corpus(*paths, level="char", name="x", encoding="latin-1", cache_folder=ids)
    assert "é" in utf8.vocab and "Ã" in latin1.vocab  # the two bytes of é read as two symbols
    assert mapped(utf8.train) is None and mapped(latin1.train) is not None  # é: decoded, not streamed


def test_random_words_round_trip_through_the_cache(tmp_path, cache_everything):
    rng = random.Random(1)
    words = [f"w{rng.randrange(500)}" for _ in range(20_000)]
    text = "\n".join(" ".join(words[i:i + rng.randrange(1, 40)]) for i in range(0, 20_000, 25))
    paths = three_files(tmp_path / "src", {"train": text, "valid": text[:999], "test": text[-999:]})
    cached = load_corpus(*paths, level="word", name="x", cache_folder=tmp_path / "ids")
    cached = load_corpus(*paths, level="word", name="x", cache_folder=tmp_path / "ids")
    assert_same(cached, build_corpus(text, text[:999], text[-999:], level="word", name="x"))
