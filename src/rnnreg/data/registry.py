"""The named datasets: where each comes from, which files it keeps, how it is split.

Checksums are verified whenever one is known and never invented. Where each number comes from
(re-checked 2026-12 without network access, against the sources named):
- PTB, PTB-char, WikiText-2, Tiny Shakespeare: SHA-256 and size of each file, computed on the
  byte-identical copies described in the project's ``shared/data/README.md`` (a test compares
  them). The WikiText-2 files also match the SHA-1 that GluonNLP 0.10.0's ``wikitext.py`` (on
  PyPI) publishes for the members of ``wikitext-2-v1.zip``.
- WikiText-103 files: the SHA-1 of GluonNLP 0.10.0's ``data/corpora/wikitext.py`` (no SHA-256 of
  the extracted files was found). No source that could be read states their sizes, so none is
  checked; torchtext 0.18's ``datasets/wikitext103.py`` gives their line counts
  (1,801,350 / 3,760 / 4,358).
- The WikiText zips: SHA-256 and size from HuggingFace ``datasets``' ``datasets/wikitext/
  dataset_infos.json`` (its split ``num_bytes`` are Arrow sizes, not file sizes: WikiText-2's
  train is 10,918,134 there and 10,797,148 on disk); other public repositories pin the same
  SHA-256 for Merity's S3 URLs. torchtext 0.18 pins their MD5 (WikiText-103
  ``9ddaacaf6af0710eda8c456decff7832``, WikiText-2 ``542ccefacc6c27f945fb54453812b3cd``), not
  checked here since the SHA-256 is.
- enwik8: size and SHA-1 of the file from Matt Mahoney's own table (which also gives the MD5
  ``a1fa5ffddb56f4953e226637dabbb36a``) as quoted in GluonNLP 0.10.0's
  ``data/corpora/large_text_compression_benchmark.py``. Public repositories that pin the file
  agree on its SHA-256, ``2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8``:
  recorded here, not checked, since the SHA-1 comes from the file's publisher. The zip's
  SHA-256 and size (36,445,475) are those of ``datasets/enwik8/dataset_infos.json``, and public
  repositories that pin ``enwik8.zip`` agree.
- text8: the file's SHA-1 from GluonNLP 0.10.0 (same module). ``text8.zip``: the size and SHA-256
  that several independent public repositories pin for ``mattmahoney.net/dc/text8.zip`` (no
  package on PyPI was found to ship them). The file's SHA-256 they agree on,
  ``6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7``, is recorded, not checked.
  GluonNLP's own ``text8-6c70299b.zip`` and ``enwik8-d25f6043.zip`` are repackaged copies of
  other layouts, not these downloads, so their SHA-1s do not apply.
- ``simple-examples.tgz``: no checksum is known; its members' checksums do the work.
"""

from __future__ import annotations

from dataclasses import dataclass

MIKOLOV = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
# Merity's current address first; the S3 bucket is the original one
WIKITEXT = ("https://wikitext.smerity.com/{}",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/{}")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DataFile:
    """A file a dataset keeps in its folder (the cache, or the user's ``data.path``).

    Attributes:
        name: the file name in that folder.
        member: its path inside the downloaded archive (None when the download is the file).
        sha256: expected SHA-256, when published.
        sha1: expected SHA-1, checked only when no SHA-256 is known.
        size: expected size in bytes.
    """

    name: str
    member: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: the registry key.
        level: ``"word"`` or ``"char"`` tokenization.
        description: one line for help text.
        urls: mirrors of the one download, tried in order (the source, for a packaged dataset).
        files: the (train, valid, test) files, or one file cut contiguously into the three.
        archive: file name of the downloaded zip/tgz; None when the URL is ``files[0]`` itself.
        archive_sha256, archive_size: what is known of the archive.
        encoding: ``"utf-8"``, or ``"latin-1"`` to read one symbol per byte.
        heldout: for one file: valid and test are each this many final symbols ...
        heldout_fraction: ... or each this fraction of the symbols (rounded down); train the rest.
        packaged: the file ships inside rnnreg (``rnnreg/data/<name>/``).
    """

    name: str
    level: str
    description: str
    urls: tuple[str, ...]
    files: tuple[DataFile, ...]
    archive: str | None = None
    archive_sha256: str | None = None
    archive_size: int | None = None
    encoding: str = "utf-8"
    heldout: int = 0
    heldout_fraction: float = 0.0
    packaged: bool = False

    def file_names(self) -> str:
        """The kept files' names, space-separated (for messages)."""
        return " ".join(f.name for f in self.files)


def _ptb_files(stem: str, sums: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[DataFile, ...]:
    return tuple(DataFile(f"{stem}.{s}.txt", f"./simple-examples/data/{stem}.{s}.txt", sha256=h, size=n)
                 for s, h, n in zip(SPLITS, sums, sizes))


def _wiki_files(folder: str, sums: tuple[str, ...], key: str,
                sizes: tuple[int | None, ...] = (None,) * 3) -> tuple[DataFile, ...]:
    return tuple(DataFile(f"wiki.{s}.tokens", f"{folder}/wiki.{s}.tokens", size=n, **{key: h})
                 for s, h, n in zip(SPLITS, sums, sizes))


# (train, valid, test) checksums
_PTB = ("fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0")
_PTB_CHAR = ("e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
             "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
             "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe")
_WT2 = ("9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
        "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0")
_WT103_SHA1 = ("b7497e2dfe77e72cfef5e3dbc61b7b53712ac211", "c326ac59dc587676d58c422eb8a03e119582f92b",
               "8a5befc548865cec54ed4273cf87dbbad60d1e47")
_SHAKESPEARE = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

_SPECS = (
    DatasetSpec(
        "ptb", "word", "Penn Treebank, Mikolov's preprocessing: 10k types, 929k/74k/82k tokens",
        (MIKOLOV,), archive="simple-examples.tgz",
        files=_ptb_files("ptb", _PTB, (5_101_618, 399_782, 449_945))),
    DatasetSpec(
        "ptb-char", "word", "Penn Treebank characters (space-separated symbols, '_' between "
        "words): 50 types", (MIKOLOV,), archive="simple-examples.tgz",
        files=_ptb_files("ptb.char", _PTB_CHAR, (10_034_964, 786_084, 884_846))),
    DatasetSpec(
        "wikitext-2", "word", "WikiText-2 (Merity et al. 2016): 33,278 types, 2.09M train tokens",
        tuple(u.format("wikitext-2-v1.zip") for u in WIKITEXT), archive="wikitext-2-v1.zip",
        archive_sha256="92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        archive_size=4_475_746,
        files=_wiki_files("wikitext-2", _WT2, "sha256", (10_797_148, 1_121_681, 1_256_449))),
    DatasetSpec(
        "wikitext-103", "word", "WikiText-103 (Merity et al. 2016): 267k types, 103M train tokens",
        tuple(u.format("wikitext-103-v1.zip") for u in WIKITEXT), archive="wikitext-103-v1.zip",
        archive_sha256="242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
        archive_size=190_229_076, files=_wiki_files("wikitext-103", _WT103_SHA1, "sha1")),
    DatasetSpec(
        "enwik8", "char", "Hutter Prize enwik8: 10^8 bytes of Wikipedia XML, one symbol per byte, "
        "split 90M/5M/5M as in AWD-LSTM's prep_enwik8.py", ("http://mattmahoney.net/dc/enwik8.zip",),
        archive="enwik8.zip",
        archive_sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
        archive_size=36_445_475,
        files=(DataFile("enwik8", "enwik8", sha1="57b8363b814821dc9d47aa4d41f58733519076b2",
                        size=100_000_000),),
        encoding="latin-1", heldout=5_000_000),
    DatasetSpec(
        "text8", "char", "text8: 10^8 characters of cleaned Wikipedia (a-z and space), split "
        "90M/5M/5M as in Mikolov et al. 2012 and the zoneout paper",
        ("http://mattmahoney.net/dc/text8.zip",), archive="text8.zip",
        archive_sha256="a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        archive_size=31_344_016,
        files=(DataFile("text8", "text8", sha1="0dc3edebc970dcc96137e7deda4d9995af9d93de",
                        size=100_000_000),),
        heldout=5_000_000),
    DatasetSpec(
        "tinyshakespeare", "char", "Tiny Shakespeare (karpathy/char-rnn), 1.1M characters, "
        "65 types, split 90%/5%/5%; ships with rnnreg",
        ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
        files=(DataFile("input.txt", sha256=_SHAKESPEARE, size=1_115_394),),
        heldout_fraction=0.05, packaged=True),
)

REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)


def describe() -> str:
    """One line per registered dataset, for ``rnnreg`` help text."""
    width = max(len(name) for name in REGISTRY)
    return "\n".join(f"{spec.name:<{width}}  {spec.level:<4}  {spec.description}"
                     for spec in REGISTRY.values())
