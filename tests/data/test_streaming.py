"""The streamed tokenizers against the in-memory path they replace.

The reference is the old way of loading files: ``read_text`` of each whole file, then
``build_corpus`` (``encode_words`` / ``encode_chars``). The streamed path (``load_corpus``) must
give the same vocabulary, ids and error messages, whatever the block size: the blocks are made
tiny here so that every line, ``\\r\\n`` pair and UTF-8 sequence meets a block boundary somewhere.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import torch

from rnnreg.data import DataError, build_corpus, load_corpus
from rnnreg.data import byte_stream, word_stream
from rnnreg.data.byte_stream import bytes_are_symbols
from rnnreg.data.textfile import read_text

TRICKY = {
    "crlf": "a b\r\nc\r\n\r\nd e \r\n",
    "lone cr": "a\rb c\r\r",
    "mixed line ends": "a\r\nb\rc\nd\r\n\n\r",
    "bom": "\ufeffhello world\nhello\n",
    "blank lines and spaces": "  \n\n x  y \t\n\n \n",
    "no final newline": "first\nlast line without newline",
    "unicode": "naïve café 日本語\n\u2028sep\u00a0nbsp \x85nel \x1cfs\n🙂 <eos> <unk> ünï\n",
    "one long line": "w " * 500,
}
HELD_OUT = ("a naïve\r\nunseen 🙂 word\n", "hello\rzz <unk>")


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def reference(paths: list[Path], level: str, encoding: str = "utf-8"):
    """The in-memory path: whole texts, then build_corpus."""
    texts = [read_text(p, encoding=encoding) for p in paths]
    return build_corpus(*texts, level=level, name="x", sources=tuple(map(str, paths)))


def assert_same(streamed, expected) -> None:
    assert streamed.vocab.to_list() == expected.vocab.to_list()
    for split in ("train", "valid", "test"):
        got, want = getattr(streamed, split), getattr(expected, split)
        assert got.dtype == torch.long and torch.equal(got, want), split
    assert streamed.sources == expected.sources


@pytest.fixture(params=[1, 3, 7, 1 << 20], ids=lambda n: f"block{n}")
def block(request, monkeypatch) -> int:
    monkeypatch.setattr(word_stream, "BLOCK", request.param)
    monkeypatch.setattr(byte_stream, "BLOCK", request.param)
    return request.param


# --- word level ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRICKY)
def test_streamed_words_equal_the_whole_text_path(tmp_path, block, name):
    paths = [write(tmp_path, "train", TRICKY[name]), write(tmp_path, "valid", HELD_OUT[0]),
             write(tmp_path, "test", HELD_OUT[1])]
    assert_same(load_corpus(*paths, level="word", name="x"), reference(paths, "word"))


def test_the_whole_tricky_set_at_once_with_unknowns_and_the_warning(tmp_path, block, caplog):
    text = "".join(TRICKY.values())
    paths = [write(tmp_path, "train", text), write(tmp_path, "valid", HELD_OUT[0]),
             write(tmp_path, "test", HELD_OUT[1] + "\r\n" + text)]
    with caplog.at_level(logging.WARNING):
        streamed = load_corpus(*paths, level="word", name="x")
        expected = reference(paths, "word")
    assert_same(streamed, expected)
    # "newline" + "naïve" glue into one training word, so "naïve" of valid is one of them
    new, old = (r.getMessage() for r in caplog.records)
    assert new == old == "x: 4 valid/test tokens are not in the training vocabulary; they map to <unk>"
    assert streamed.vocab.to_list()[-1] != "<unk>"  # the training text has one: it is reused


def test_an_unknown_word_adds_one_unk_at_the_end(tmp_path, block):
    paths = [write(tmp_path, "train", "a b\n"), write(tmp_path, "valid", "c a\n"),
             write(tmp_path, "test", "d\r\n")]
    streamed = load_corpus(*paths, level="word", name="x")
    assert streamed.vocab.to_list() == ["a", "b", "<eos>", "<unk>"]
    assert streamed.valid.tolist() == [3, 0, 2] and streamed.test.tolist() == [3, 2]
    assert_same(streamed, reference(paths, "word"))


@pytest.mark.parametrize("content", [
    b"good line\n" * 3 + b"\xffbad\n",            # bad UTF-8 after several blocks
    b"\xef\xbb\xbfok\n\xe4\n",                     # a byte order mark, then a cut sequence
    b"ok\n\xff\nmore text\n\x00\n",                # NUL after the bad byte: the NUL is reported
    b"ok\n\x00\n\xff\n",                           # NUL first
    b"ends in the middle of a character \xe6\x97",
    b"  \n\t\r\n",                                 # only whitespace
    b"\xef\xbb\xbf",                               # only a byte order mark
])
def test_bad_files_give_the_same_one_line_error(tmp_path, block, content):
    good = [write(tmp_path, "train", "a b\n"), write(tmp_path, "valid", "a\n")]
    paths = [*good, write(tmp_path, "test", content)]
    with pytest.raises(DataError) as old:
        reference(paths, "word")
    with pytest.raises(DataError) as new:
        load_corpus(*paths, level="word", name="x")
    assert str(new.value) == str(old.value)
    assert "\n" not in str(new.value) and str(paths[2]) in str(new.value)


# --- character level ----------------------------------------------------------------------------

def test_latin1_bytes_stream_through_the_lookup_table(tmp_path, block):
    rng = random.Random(0)
    raw = bytes(rng.randrange(256) for _ in range(3000))
    held = bytes(rng.randrange(200) for _ in range(50)) + b"\xfe\xff\x00"  # maybe unseen in train
    paths = [write(tmp_path, "train", raw[:2000]), write(tmp_path, "valid", held),
             write(tmp_path, "test", raw[2000:])]
    assert bytes_are_symbols(paths[0], "latin-1")
    assert_same(load_corpus(*paths, level="char", name="x", encoding="latin-1"),
                reference(paths, "char", "latin-1"))


def test_ascii_text_streams_and_other_utf8_is_decoded_with_the_same_result(tmp_path, block):
    ascii_paths = [write(tmp_path, f"a{i}", t) for i, t in enumerate(("the cat\n sat", "tax!", "cab\n"))]
    assert bytes_are_symbols(ascii_paths[0], "utf-8")
    assert_same(load_corpus(*ascii_paths, level="char", name="x"), reference(ascii_paths, "char"))
    utf8 = [write(tmp_path, f"u{i}", t) for i, t in enumerate(("héllo 日本\n", "hé", "\ufeffh"))]
    assert not bytes_are_symbols(utf8[0], "utf-8")
    assert_same(load_corpus(*utf8, level="char", name="x"), reference(utf8, "char"))


def test_a_nul_byte_in_utf8_char_text_is_refused_with_its_offset(tmp_path):
    paths = [write(tmp_path, "train", "ab"), write(tmp_path, "valid", "a"),
             write(tmp_path, "test", b"ab\x00c")]
    with pytest.raises(DataError, match=r"test looks like binary data \(NUL byte at offset 2\)"):
        load_corpus(*paths, level="char", name="x")
