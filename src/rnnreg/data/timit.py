"""TIMIT (LDC93S1) in the layout LDC distributes: ``<root>/TRAIN/DR1/FCJF0/SI1027.WAV`` with
``.PHN`` (phone segments), ``.WRD`` and ``.TXT`` beside it, and the same under ``TEST``.

Names may be upper or lower case (both circulate), ``<root>`` may also be a folder holding the
tree one level down (``<root>/TIMIT/TRAIN``), and the audio may be NIST SPHERE (as LDC ships it)
or RIFF WAV (converted copies, some named ``SI1027.WAV.wav``). TIMIT is licensed: nothing is
downloaded, point ``root`` at your copy.

Splits (see :mod:`.timit_conventions`): "train" is every TRAIN speaker (462; 3,696 utterances),
"valid" the 50-speaker development set and "test" the 24-speaker core test set, both from TEST;
SA sentences are excluded unless ``include_sa``. Each utterance carries its 61-phone
transcription as written in the .PHN file and log mel features (:mod:`.filterbank`), raw: the
caller normalises them with training-set statistics (:func:`feature_statistics`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from .errors import DataError
from .filterbank import log_mel_features
from .sphere import read_audio
from .timit_conventions import CORE_TEST_SPEAKERS, DEV_SPEAKERS, FOLD_39

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
TIMIT_SPLITS = ("train", "valid", "test")
_LAYOUT = "<root>/TRAIN/DR1/FCJF0/SI1027.WAV + .PHN and <root>/TEST/... (upper or lower case)"


@dataclass(frozen=True)
class PhoneSegment:
    """One line of a .PHN file: samples [start, end) hold ``phone`` (one of the 61)."""
    start: int
    end: int
    phone: str


@dataclass(frozen=True)
class TimitUtterance:
    """speaker and sentence ids (lower case), dialect region ("dr1"), the 61-phone segments and
    features (T, F) float32."""
    speaker: str
    sentence: str
    dialect: str
    segments: tuple[PhoneSegment, ...]
    features: Tensor

    @property
    def phones(self) -> list[str]:
        return [s.phone for s in self.segments]


def read_phn(path: str | Path) -> list[PhoneSegment]:
    """The segments of a .PHN file (``start end phone`` per line, in samples), checked: known
    phones, start < end, in order and not overlapping."""
    segments: list[PhoneSegment] = []
    for number, line in enumerate(Path(path).read_text(encoding="ascii", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise DataError(f"{path}:{number}: expected 'start end phone', got {line!r}")
        start, end, phone = int(parts[0]), int(parts[1]), parts[2].lower()
        if phone not in FOLD_39:
            raise DataError(f"{path}:{number}: {phone!r} is not one of TIMIT's 61 phones")
        if start >= end or (segments and start < segments[-1].end):
            raise DataError(f"{path}:{number}: segment {start}-{end} is empty or overlaps the previous one")
        segments.append(PhoneSegment(start, end, phone))
    if not segments:
        raise DataError(f"{path} holds no phone segments")
    return segments


def _children(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in folder.iterdir()}


def timit_root(root: str | Path | None) -> Path:
    """The folder holding TRAIN and TEST: ``root`` itself or its one child that does."""
    if root is None or str(root) == "":
        raise DataError("TIMIT (LDC93S1) is licensed and never downloaded: pass the folder of your copy "
                        "(the LDC layout, with TRAIN and TEST) as data.path=DIR")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"TIMIT folder {root} does not exist")
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    found = [c for c in candidates if {"train", "test"} <= {n for n, p in _children(c).items() if p.is_dir()}]
    if not found:
        raise DataError(f"{root} is not a TIMIT tree: expected {_LAYOUT}")
    return found[0]


def _audio_for(phn: Path, names: dict[str, Path]) -> Path:
    stem = phn.name[:-4].lower()
    for name in (f"{stem}.wav", f"{stem}.wav.wav"):
        if name in names:
            return names[name]
    raise DataError(f"{phn} has no audio file beside it ({phn.name[:-4]}.WAV)")


def utterance_files(root: str | Path, split: str, include_sa: bool = False) -> list[tuple[str, Path, Path]]:
    """(dialect, .PHN, audio) of every utterance of ``split``, sorted by path."""
    if split not in TIMIT_SPLITS:
        raise ValueError(f"split must be one of {', '.join(TIMIT_SPLITS)}, got {split!r}")
    folder = _children(timit_root(root))["train" if split == "train" else "test"]
    speakers = {"valid": DEV_SPEAKERS, "test": CORE_TEST_SPEAKERS}.get(split)
    found = []
    for dialect in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower().startswith("dr")):
        for speaker in sorted(p for p in dialect.iterdir() if p.is_dir()):
            if speakers is not None and speaker.name.lower() not in speakers:
                continue
            names = _children(speaker)
            for phn in sorted(p for n, p in names.items() if n.endswith(".phn")):
                if include_sa or not phn.name.lower().startswith("sa"):
                    found.append((dialect.name.lower(), phn, _audio_for(phn, names)))
    if not found:
        raise DataError(f"no {split} utterances under {folder}: expected {_LAYOUT}")
    return found


def load_utterance(dialect: str, phn: Path, audio: Path, **features: object) -> TimitUtterance:
    """One utterance: its .PHN segments checked against the audio, and its features."""
    samples, rate = read_audio(audio)
    if rate != SAMPLE_RATE:
        raise DataError(f"{audio} is sampled at {rate} Hz; TIMIT is {SAMPLE_RATE} Hz")
    segments = read_phn(phn)
    if segments[-1].start >= samples.shape[0]:
        raise DataError(f"{phn} has segments past the end of {audio} ({samples.shape[0]} samples)")
    if segments[-1].end > samples.shape[0]:
        logger.warning("%s ends at sample %d, after the audio's %d", phn, segments[-1].end, samples.shape[0])
    return TimitUtterance(phn.parent.name.lower(), phn.name[:-4].lower(), dialect, tuple(segments),
                          log_mel_features(samples, rate, **features))


def load_timit(root: str | Path, split: str, *, num_mels: int = 40, energy: bool = True, deltas: int = 2,
               include_sa: bool = False) -> list[TimitUtterance]:
    """Every utterance of ``split`` ("train", "valid" or "test") with raw log mel features.

    Raises:
        DataError: ``root`` is not a TIMIT tree, a file is unreadable or malformed, or the audio
            is shorten-compressed SPHERE.
    """
    files = utterance_files(root, split, include_sa)
    logger.info("TIMIT %s: computing features of %d utterances", split, len(files))
    return [load_utterance(d, phn, audio, num_mels=num_mels, energy=energy, deltas=deltas)
            for d, phn, audio in files]


def feature_statistics(utterances: list[TimitUtterance]) -> tuple[Tensor, Tensor]:
    """Per-feature mean and standard deviation (F,) over every frame of ``utterances``."""
    if not utterances:
        raise ValueError("utterances must not be empty")
    # Running sums in float64, not one (frames, F) copy of the whole set (about 1 GB for TIMIT).
    total = sum(u.features.double().sum(0) for u in utterances)
    squares = sum(u.features.double().pow(2).sum(0) for u in utterances)
    count = sum(u.features.shape[0] for u in utterances)
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp(min=0).sqrt()
    return mean.float(), std.clamp(min=1e-8).float()
