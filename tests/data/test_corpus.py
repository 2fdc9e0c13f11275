"""Vocabulary, tokenization and corpus loading, on small files and on the real benchmark corpora.

Expected counts come from ``shared/data/README.md`` (computed there with pytorch/examples'
convention) or from a plain reference loop written here, never from rnnreg itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from rnnreg.data import (EOS, UNK, Corpus, DataError, Vocabulary, build_corpus, load_corpus,
                         load_text_folder)

from helpers import shared_data


def split_paths(folder: str, pattern: str) -> list[Path]:
    return [shared_data() / folder / pattern.format(s) for s in ("train", "valid", "test")]


def reference_word_tokens(path: Path) -> list[str]:
    """pytorch/examples' convention, written out: every line read in text mode gives
    ``line.split() + ['<eos>']``."""
    tokens: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            tokens += line.split() + ["<eos>"]
    return tokens


def write(folder: Path, files: dict[str, str | bytes]) -> list[Path]:
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        paths.append(path)
    return paths


# --- Vocabulary ---------------------------------------------------------------------------------

def test_vocabulary_assigns_ids_in_first_seen_order():
    vocab = Vocabulary.build(["the", "cat", "the", "sat", "cat"])
    assert vocab.to_list() == ["the", "cat", "sat"]
    assert vocab.index("sat") == 2 and len(vocab) == 3
    ids = vocab.encode(["sat", "the", "the"])
    assert ids.dtype == torch.long and ids.tolist() == [2, 0, 0]
    assert vocab.decode(ids) == ["sat", "the", "the"]
    assert vocab.decode(torch.tensor([[1], [0]])) == ["cat", "the"]  # any shape reads flat


def test_vocabulary_round_trips_through_a_plain_list_and_compares_by_content():
    vocab = Vocabulary.build("a b c a".split())
    restored = Vocabulary.from_list(vocab.to_list())
    assert restored == vocab and restored is not vocab
    assert Vocabulary.from_list(["b", "a", "c"]) != vocab
    assert vocab != ["a", "b", "c"]


def test_vocabulary_refuses_duplicates_non_strings_and_unknown_tokens():
    with pytest.raises(ValueError, match="twice"):
        Vocabulary.from_list(["a", "b", "a"])
    with pytest.raises(TypeError, match="strings"):
        Vocabulary.from_list(["a", 3])
    vocab = Vocabulary.build(["a"])
    with pytest.raises(ValueError, match="'zz' is not in the vocabulary"):
        vocab.encode(["a", "zz"])
    with pytest.raises(ValueError, match="range"):
        vocab.decode([1])


def test_unknown_tokens_map_to_unk_when_the_vocabulary_has_it():
    vocab = Vocabulary.build(["a", UNK, "b"])
    assert vocab.encode(["b", "never-seen"]).tolist() == [2, 1]


# --- tokenization -------------------------------------------------------------------------------

def test_word_level_matches_the_reference_loop_including_blank_and_unterminated_lines(tmp_path):
    text = " a b \n\nc  d\n e"  # blank line -> a lone <eos>; the last line has no newline
    train, valid, test = write(tmp_path, {"tr": text, "va": "a\n", "te": "b c\n"})
    corpus = load_corpus(train, valid, test, level="word", name="toy")
    assert corpus.vocab.decode(corpus.train) == reference_word_tokens(train)
    assert corpus.vocab.decode(corpus.train) == ["a", "b", EOS, EOS, "c", "d", EOS, "e", EOS]


def test_crlf_line_ends_tokenize_like_lf(tmp_path):
    lf = write(tmp_path, {"a": "x y\nz\n", "b": "x\n", "c": "y\n"})
    crlf = write(tmp_path, {"d": "x y\r\nz\r\n", "e": "x\r\n", "f": "y\r\n"})
    a = load_corpus(*lf, level="word", name="lf")
    b = load_corpus(*crlf, level="word", name="crlf")
    assert a.vocab == b.vocab and torch.equal(a.train, b.train)


def test_char_level_keeps_every_character_and_newlines_without_eos(tmp_path):
    text = "héllo 日本\n🙂!\n"
    paths = write(tmp_path, {"tr": text, "va": "hé", "te": "\n"})
    corpus = load_corpus(*paths, level="char", name="chars")
    assert corpus.vocab.decode(corpus.train) == list(text)
    assert EOS not in corpus.vocab and corpus.vocab.to_list()[:3] == ["h", "é", "l"]
    assert corpus.vocab.decode(corpus.valid) == ["h", "é"]


def test_latin1_reads_one_symbol_per_byte_nul_included(tmp_path):
    raw = bytes(range(256)) * 3
    paths = write(tmp_path, {"tr": raw, "va": raw[:10], "te": raw[-10:]})
    corpus = load_corpus(*paths, level="char", name="bytes", encoding="latin-1")
    assert len(corpus.vocab) == 256 and corpus.train.numel() == len(raw)
    assert "".join(corpus.vocab.decode(corpus.train)).encode("latin-1") == raw


def test_a_byte_order_mark_does_not_stick_to_the_first_word(tmp_path):
    paths = write(tmp_path, {"tr": b"\xef\xbb\xbfhello world\n", "va": "hello\n", "te": "world\n"})
    corpus = load_corpus(*paths, level="word", name="bom")
    assert corpus.vocab.to_list() == ["hello", "world", EOS]


# --- vocabulary from train only, <unk> -----------------------------------------------------------

def test_held_out_words_missing_from_train_map_to_one_added_unk(tmp_path, caplog):
    paths = write(tmp_path, {"tr": "a b\n", "va": "a c d\n", "te": "c b\n"})
    with caplog.at_level(logging.WARNING, logger="rnnreg.data.corpus"):
        corpus = load_corpus(*paths, level="word", name="open")
    assert corpus.vocab.to_list() == ["a", "b", EOS, UNK]  # added once, after the train types
    assert corpus.vocab.decode(corpus.valid) == ["a", UNK, UNK, EOS]
    assert corpus.vocab.decode(corpus.test) == [UNK, "b", EOS]
    assert "3 valid/test tokens" in caplog.text


def test_an_existing_unk_is_reused_and_a_closed_vocabulary_gets_none(tmp_path):
    paths = write(tmp_path, {"tr": f"a {UNK}\n", "va": "zz\n", "te": "a\n"})
    corpus = load_corpus(*paths, level="word", name="has-unk")
    assert corpus.vocab.to_list() == ["a", UNK, EOS]
    assert corpus.vocab.decode(corpus.valid) == [UNK, EOS]
    closed = load_corpus(*write(tmp_path, {"x": "a b\n", "y": "b\n", "z": "a\n"}), level="word",
                         name="closed")
    assert UNK not in closed.vocab


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, level, message", [
    (None, "word", "no such file"),
    (b"", "word", "is empty"),
    (b"  \n\t\n", "word", "has no tokens"),
    (b"good\n\xffbad\n", "word", "not valid UTF-8 (bad byte at offset 5)"),
    (b"PK\x03\x04\x00\x00binary", "char", "binary data (NUL byte at offset 4)"),
])
def test_unusable_files_raise_a_one_line_data_error_naming_the_file(tmp_path, content, level,
                                                                    message):
    good = write(tmp_path, {"train.txt": "a b\n", "valid.txt": "a\n"})
    bad = tmp_path / "test.txt"
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_corpus(*good, bad, level=level, name="bad")
    assert message in str(info.value) and str(bad) in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_folder_given_as_a_file_is_refused(tmp_path):
    good = write(tmp_path, {"a": "x\n", "b": "x\n"})
    with pytest.raises(DataError, match="is a folder"):
        load_corpus(*good, tmp_path, level="word", name="bad")


def test_whitespace_is_a_token_at_char_level(tmp_path):
    corpus = load_corpus(*write(tmp_path, {"a": "ab \n", "b": " ", "c": "\n"}), level="char",
                         name="ws")
    assert corpus.vocab.decode(corpus.valid) == [" "]


def test_bad_level_and_bad_tensors_are_refused():
    with pytest.raises(ValueError, match="level must be one of"):
        build_corpus("a", "a", "a", level="subword", name="x")
    with pytest.raises(TypeError, match="1-D int64"):
        Corpus("x", "word", Vocabulary(["a"]), torch.zeros(2, 2, dtype=torch.long),
               torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))


# --- user folders -------------------------------------------------------------------------------

@pytest.mark.parametrize("names", [("train.txt", "valid.txt", "test.txt"),
                                   ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
                                   ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")])
def test_text_folders_accept_the_common_naming_patterns(tmp_path, names):
    folder = tmp_path / "mycorpus"
    folder.mkdir()
    write(folder, dict(zip(names, ["a b c\n", "b\n", "c a\n"])))
    (folder / "README.md").write_text("not a split")
    corpus = load_text_folder(folder)
    assert corpus.name == "mycorpus" and corpus.level == "word"
    assert corpus.train.numel() == 4 and corpus.valid.numel() == 2 and corpus.test.numel() == 3


def test_a_folder_without_split_files_says_what_was_expected(tmp_path):
    write(tmp_path, {"train.txt": "a\n", "dev.txt": "a\n", "test.txt": "a\n"})
    with pytest.raises(DataError) as info:
        load_text_folder(tmp_path)
    text = str(info.value)
    assert "train.txt valid.txt test.txt" in text and "PREFIX.train.tokens" in text
    assert "found: dev.txt test.txt train.txt" in text


def test_a_folder_with_two_sets_of_split_files_is_ambiguous(tmp_path):
    write(tmp_path, {f"{p}.{s}.txt": "a\n" for p in ("ptb", "ptb.char")
                     for s in ("train", "valid", "test")})
    with pytest.raises(DataError, match="several sets"):
        load_text_folder(tmp_path)


# --- the real corpora ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ptb() -> Corpus:
    return load_corpus(*split_paths("ptb", "ptb.{}.txt"), level="word", name="ptb")


@pytest.fixture(scope="module")
def wikitext2() -> Corpus:
    return load_corpus(*split_paths("wikitext-2", "wiki.{}.tokens"), level="word", name="wt2")


def test_ptb_has_the_published_token_counts_and_a_closed_vocabulary(ptb):
    assert (ptb.train.numel(), ptb.valid.numel(), ptb.test.numel()) == (929_589, 73_760, 82_430)
    assert len(ptb.vocab) == 10_000  # 9,999 types in the files + <eos>: no <unk> was added
    for ids in (ptb.train, ptb.valid, ptb.test):
        assert 0 <= int(ids.min()) and int(ids.max()) < 10_000
    first_line = split_paths("ptb", "ptb.{}.txt")[0].open().readline().split() + [EOS]
    assert ptb.vocab.decode(ptb.train[: len(first_line)]) == first_line


def test_ptb_valid_decodes_back_to_the_reference_tokens(ptb):
    path = split_paths("ptb", "ptb.{}.txt")[1]
    assert ptb.vocab.decode(ptb.valid) == reference_word_tokens(path)


def test_wikitext2_has_the_published_counts(wikitext2):
    counts = (wikitext2.train.numel(), wikitext2.valid.numel(), wikitext2.test.numel())
    assert counts == (2_088_628, 217_646, 245_569)
    assert len(wikitext2.vocab) == 33_278


def test_ptb_char_has_50_symbols():
    paths = split_paths("ptb_char", "ptb.char.{}.txt")
    corpus = load_corpus(*paths, level="word", name="ptb-char")
    assert len(corpus.vocab) == 50
    # README: 4,975,414 symbols on 42,068 lines. The file ends "\n " (every character is followed
    # by a space), so the reference loop also reads a final line holding one space: one more <eos>.
    assert paths[0].read_bytes().endswith(b"\n ")
    assert corpus.train.numel() == 4_975_414 + 42_068 + 1
