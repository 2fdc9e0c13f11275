"""MNIST idx files: the parser's edge cases, folder / cache / download (file:// mirrors only, no
network), and the real files where the shared data folder has them."""

from __future__ import annotations

import gzip
import logging
import shutil
import struct
from pathlib import Path

import pytest
import torch

from helpers import shared_data
from rnnreg.data.errors import DataError
from rnnreg.data.mnist import FILES, load_mnist, read_idx


def idx_bytes(values: torch.Tensor, *, type_byte: int = 0x08) -> bytes:
    """An idx file written from the format's definition: 0 0 type ndim, big-endian dims, values."""
    header = bytes([0, 0, type_byte, values.dim()]) + struct.pack(f">{values.dim()}I", *values.shape)
    return header + values.to(torch.uint8).contiguous().numpy().tobytes()


def write_tiny_mnist(folder: Path, *, n_train: int = 3, n_test: int = 2, compress: bool = True) -> dict:
    """Four MNIST-shaped idx files (N x 28 x 28 images, labels 0-9) named as the real ones."""
    g = torch.Generator().manual_seed(0)
    tensors = {"train-images-idx3-ubyte": torch.randint(0, 256, (n_train, 28, 28), generator=g),
               "train-labels-idx1-ubyte": torch.arange(n_train) % 10,
               "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, 28, 28), generator=g),
               "t10k-labels-idx1-ubyte": (torch.arange(n_test) + 3) % 10}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, values in tensors.items():
        data = idx_bytes(values)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return tensors


def test_read_idx_plain_and_gzip_agree(tmp_path):
    values = torch.arange(24).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(idx_bytes(values))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(values)))
    (tmp_path / "packed-without-suffix").write_bytes(gzip.compress(idx_bytes(values)))
    for name in ("plain", "packed.gz", "packed-without-suffix"):
        got = read_idx(tmp_path / name)
        assert got.dtype == torch.uint8 and got.shape == (2, 3, 4)
        assert torch.equal(got, values.to(torch.uint8))
    assert read_idx(tmp_path / "plain")[1, 2, 3] == 23  # row-major, as the format says


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"\x08\x03" + b[2:], "magic"),                  # non-zero leading bytes
    (lambda b: b[:2] + b"\x0d" + b[3:], "not supported"),        # 0x0D: float values
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "longer"),
    (lambda b: b[:6], "cut short"),                              # header of 3 dims needs 16 bytes
    (lambda b: b"", "magic"),
    (lambda b: gzip.compress(b)[:-10], "gzip"),                  # a cut-off download
])
def test_read_idx_refuses_malformed_files(tmp_path, corrupt, message):
    path = tmp_path / "bad"
    path.write_bytes(corrupt(idx_bytes(torch.zeros(2, 3, 4))))
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_load_from_a_folder_gz_or_uncompressed(tmp_path, caplog):
    packed = write_tiny_mnist(tmp_path / "gz")
    plain = write_tiny_mnist(tmp_path / "raw", compress=False)
    for folder, expected in ((tmp_path / "gz", packed), (tmp_path / "raw", plain)):
        with caplog.at_level(logging.WARNING, logger="rnnreg.data.mnist"):
            data = load_mnist(folder)
        got = (data.train_images, data.train_labels, data.test_images, data.test_labels)
        for tensor, want in zip(got, expected.values()):
            assert tensor.dtype == torch.uint8 and torch.equal(tensor, want.to(torch.uint8))
    # the user's files are used, but their difference from the canonical ones is reported
    assert "differs from the canonical MNIST file" in caplog.text


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)
    write_tiny_mnist(tmp_path, n_train=3)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(torch.tensor([1, 2]))))
    with pytest.raises(DataError, match="3 images .* but 2 labels"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(torch.tensor([1, 2, 12]))))
    with pytest.raises(DataError, match="not a digit"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(torch.tensor([1, 2, 3]))))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(torch.zeros(2, 27, 28))))
    with pytest.raises(DataError, match=r"\(N, 28, 28\)"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("right_size, message", [(False, r"gave \d+ bytes, expected 9912422"),
                                                   (True, "checksum mismatch")])
def test_download_refuses_wrong_bytes_and_keeps_nothing(tmp_path, right_size, message):
    write_tiny_mnist(tmp_path / "mirror")  # not the canonical bytes
    if right_size:  # as long as the real file, but zeros
        (tmp_path / "mirror" / FILES[0].gz.name).write_bytes(bytes(FILES[0].gz.size))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=message):
        load_mnist(cache_dir=cache, mirrors=((tmp_path / "mirror").as_uri() + "/",))
    assert not any(p.is_file() for p in (cache / "mnist").glob("*"))


def test_download_tries_every_mirror_then_says_how_to_provide_the_files(tmp_path):
    mirrors = ((tmp_path / "none1").as_uri() + "/", (tmp_path / "none2").as_uri() + "/")
    with pytest.raises(DataError, match="none1.* or .*none2.*data.path=DIR"):
        load_mnist(cache_dir=tmp_path / "cache", mirrors=mirrors)
    with pytest.raises(DataError, match="download is off.*data.path=DIR"):
        load_mnist(cache_dir=tmp_path / "cache", download=False)


def real_mnist() -> Path:
    folder = shared_data() / "mnist"
    if not all((folder / f.gz.name).is_file() for f in FILES):
        pytest.skip("shared MNIST files not found")
    return folder


def test_real_files_counts_and_known_examples():
    data = load_mnist(real_mnist())
    assert data.train_images.shape == (60_000, 28, 28) and data.test_images.shape == (10_000, 28, 28)
    # label counts as recorded in the shared data's README (computed independently of rnnreg)
    assert data.train_labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data.test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert int(data.train_labels[0]) == 5 and int(data.test_labels[0]) == 7  # the well-known first digits
    assert float(data.train_images.float().mean() / 255) == pytest.approx(0.130660, abs=1e-5)


def test_cache_download_verify_and_refetch(tmp_path, caplog):
    mirror = real_mnist().as_uri() + "/"
    cache = tmp_path / "cache"
    first = load_mnist(cache_dir=cache, mirrors=("file:///nonexistent/", mirror))  # second mirror wins
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(f.gz.name for f in FILES)
    labels = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(labels, tmp_path / "saved")
    labels.write_bytes(labels.read_bytes()[:-100])  # a corrupted cache entry
    with pytest.raises(DataError, match="download is off"):
        load_mnist(cache_dir=cache, download=False)
    with caplog.at_level(logging.WARNING, logger="rnnreg.data.mnist"):
        again = load_mnist(cache_dir=cache, mirrors=(mirror,))
    assert "wrong checksum; fetching it again" in caplog.text
    assert labels.read_bytes() == (tmp_path / "saved").read_bytes()
    assert torch.equal(first.test_labels, again.test_labels)
