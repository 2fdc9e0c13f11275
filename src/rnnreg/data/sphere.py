"""Reading speech audio: NIST SPHERE files (TIMIT as LDC ships it) and RIFF WAV (converted copies).

A SPHERE file starts with an ASCII header: the line ``NIST_1A``, the header size in bytes (1024
for TIMIT) on the next line, then ``name -type value`` fields (``-i`` integer, ``-r`` real,
``-sN`` string of N characters) up to ``end_head``; the samples follow the header. TIMIT's are
16-bit PCM at 16 kHz, ``sample_byte_format`` "01" (little-endian; "10" is big-endian). Files whose
``sample_coding`` names shorten (compressed SPHERE, e.g. some NIST CD-ROM copies) are refused: we
do not implement the decompressor; convert them first (``sph2pipe -f wav``).
"""

from __future__ import annotations

import sys
import wave
from array import array
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError

SPHERE_MAGIC = b"NIST_1A"
_BYTE_ORDERS = {"01": "little", "10": "big", "1": "little"}  # "1": single-byte samples


def parse_sphere_header(data: bytes, name: str = "<bytes>") -> tuple[dict[str, int | float | str], int]:
    """The header fields of a SPHERE file's leading bytes, and the header's size in bytes."""
    lines = data[:1024].split(b"\n", 2)
    if len(lines) < 3 or lines[0].strip() != SPHERE_MAGIC or not lines[1].strip().isdigit():
        raise DataError(f"{name} is not a NIST SPHERE file (no 'NIST_1A' header)")
    size = int(lines[1])
    text = data[:size].decode("ascii", errors="replace").split("\n")[2:]
    fields: dict[str, int | float | str] = {}
    for line in text:
        if line.strip() == "end_head":
            return fields, size
        parts = line.split(" ", 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            continue  # blank or comment lines (";") carry no field
        key, kind, value = parts
        fields[key] = int(value) if kind == "-i" else float(value) if kind == "-r" else value.rstrip("\r")
    raise DataError(f"{name} has a SPHERE header without 'end_head' in its first {size} bytes")


def _pcm16(raw: bytes, order: str) -> Tensor:
    samples = array("h")
    samples.frombytes(raw[: len(raw) - len(raw) % 2])
    if order != sys.byteorder:
        samples.byteswap()
    return torch.tensor(samples, dtype=torch.float32) / 32768.0


def read_sphere(path: Path) -> tuple[Tensor, int]:
    """Samples (N,) float32 in [-1, 1) and the sample rate of a 16-bit mono PCM SPHERE file."""
    data = path.read_bytes()
    fields, size = parse_sphere_header(data, str(path))
    coding = str(fields.get("sample_coding", "pcm"))
    if "shorten" in coding:
        raise DataError(f"{path} is shorten-compressed SPHERE ({coding}), which is not supported; "
                        f"decompress it first (e.g. 'sph2pipe -f wav')")
    width, channels = int(fields.get("sample_n_bytes", 2)), int(fields.get("channel_count", 1))
    if width != 2 or channels != 1 or not coding.startswith("pcm"):
        raise DataError(f"{path}: only 16-bit mono PCM is supported, got {width} bytes x {channels} "
                        f"channels, coding {coding!r}")
    order = _BYTE_ORDERS.get(str(fields.get("sample_byte_format", "01")))
    if order is None:
        raise DataError(f"{path}: unknown sample_byte_format {fields.get('sample_byte_format')!r}")
    samples = _pcm16(data[size:], order)
    count = int(fields.get("sample_count", samples.shape[0]))
    if samples.shape[0] < count:
        raise DataError(f"{path} is truncated: header says {count} samples, file holds {samples.shape[0]}")
    return samples[:count], int(fields.get("sample_rate", 16000))


def read_wav(path: Path) -> tuple[Tensor, int]:
    """Samples (N,) float32 in [-1, 1) and the sample rate of a 16-bit mono RIFF WAV file."""
    try:
        with wave.open(str(path), "rb") as f:
            if f.getsampwidth() != 2 or f.getnchannels() != 1:
                raise DataError(f"{path}: only 16-bit mono WAV is supported, got "
                                f"{8 * f.getsampwidth()}-bit x {f.getnchannels()} channels")
            return _pcm16(f.readframes(f.getnframes()), "little"), f.getframerate()
    except (wave.Error, EOFError) as error:
        raise DataError(f"{path} is not a readable WAV file ({error})") from error


def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """Samples (N,) float32 and the sample rate of a SPHERE or RIFF WAV file (told by its magic)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(8)
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or error})") from error
    if magic.startswith(SPHERE_MAGIC):
        return read_sphere(path)
    if magic.startswith(b"RIFF"):
        return read_wav(path)
    raise DataError(f"{path} is neither NIST SPHERE ('NIST_1A') nor RIFF WAV audio")
