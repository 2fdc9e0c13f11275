"""TIMIT in its LDC layout, on a tiny fake tree: SPHERE and WAV reading, .PHN segments, 61 -> 39
folding, split selection (SA excluded, dev and core test speakers), features, and the task."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import pytest
import torch

from rnnreg.data.errors import DataError
from rnnreg.data.filterbank import add_deltas, feature_size, log_mel_features, mel_filterbank
from rnnreg.data.sphere import parse_sphere_header, read_audio
from rnnreg.data.timit import feature_statistics, load_timit, read_phn, timit_root, utterance_files
from rnnreg.data.timit_conventions import (CORE_TEST_SPEAKERS, DEV_SPEAKERS, FOLD_39, PHONES_39, PHONES_61,
                                           fold_phones)
from rnnreg.tasks.timit import TimitTask

RATE = 16000
PHONES = ["h#", "sh", "ix", "hv", "q", "eh", "dcl", "jh", "ih", "h#"]  # "she had your ..." (shortened)


def tone(count: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(count) / RATE
    return 0.3 * torch.sin(2 * math.pi * (200 + 50 * seed) * t) + 0.05 * torch.randn(count, generator=gen)


def pcm(samples: torch.Tensor) -> torch.Tensor:
    return (samples * 32767).round().clamp(-32768, 32767).to(torch.int16)


def sphere_bytes(samples: torch.Tensor, byte_format: str = "01", coding: str | None = None) -> bytes:
    ints = pcm(samples)
    fields = ["database_id -s5 TIMIT", f"sample_count -i {ints.shape[0]}", f"sample_rate -i {RATE}",
              "channel_count -i 1", f"sample_byte_format -s{len(byte_format)} {byte_format}",
              "sample_n_bytes -i 2", "sample_sig_bits -i 16"]
    if coding:
        fields.append(f"sample_coding -s{len(coding)} {coding}")
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\nend_head\n").encode("ascii")
    body = ints.numpy().astype("<i2" if byte_format == "01" else ">i2").tobytes()
    return header.ljust(1024, b" ") + body


def write_wav(path: Path, samples: torch.Tensor) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm(samples).numpy().astype("<i2").tobytes())


def write_utterance(folder: Path, name: str, seed: int, upper: bool = True, riff: bool = False) -> None:
    count = 4800 + 160 * seed  # 0.3 s and more
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.upper() if upper else name.lower()
    ext = (lambda e: e.upper() if upper else e.lower())
    bounds = torch.linspace(0, count, len(PHONES) + 1).long().tolist()
    lines = [f"{bounds[i]} {bounds[i + 1]} {p}" for i, p in enumerate(PHONES)]
    (folder / f"{stem}{ext('.phn')}").write_text("\n".join(lines) + "\n")
    if riff:
        write_wav(folder / f"{stem}{ext('.wav')}.wav", tone(count, seed))
    else:
        (folder / f"{stem}{ext('.wav')}").write_bytes(sphere_bytes(tone(count, seed)))


def fake_tree(root: Path, upper: bool = True, riff: bool = False) -> Path:
    case = (lambda s: s.upper() if upper else s.lower())
    layout = {("train", "dr1", "fcjf0"): 0, ("train", "dr2", "mabc0"): 3,
              ("test", "dr1", "mdab0"): 6, ("test", "dr1", "faks0"): 9, ("test", "dr3", "mzzz0"): 12}
    for (split, dialect, speaker), seed in layout.items():
        folder = root / case(split) / case(dialect) / case(speaker)
        for i, sentence in enumerate(("sa1", "sa2", "si1027", "sx37")):
            write_utterance(folder, sentence, seed + i, upper, riff)
    return root


def test_sphere_header_and_samples(tmp_path):
    samples = tone(5000, 1)
    for order in ("01", "10"):
        path = tmp_path / f"x{order}.wav"
        path.write_bytes(sphere_bytes(samples, order))
        fields, size = parse_sphere_header(path.read_bytes())
        assert size == 1024 and fields["sample_count"] == 5000 and fields["sample_byte_format"] == order
        read, rate = read_audio(path)
        assert rate == RATE and torch.equal(read, pcm(samples).float() / 32768)


def test_riff_wav_reads_the_same_samples(tmp_path):
    samples = tone(3000, 2)
    write_wav(tmp_path / "a.wav", samples)
    (tmp_path / "b.wav").write_bytes(sphere_bytes(samples))
    assert torch.equal(read_audio(tmp_path / "a.wav")[0], read_audio(tmp_path / "b.wav")[0])


def test_bad_audio_is_a_clear_error(tmp_path):
    (tmp_path / "s.wav").write_bytes(sphere_bytes(tone(2000, 0), coding="pcm,embedded-shorten-v1.1"))
    with pytest.raises(DataError, match="shorten"):
        read_audio(tmp_path / "s.wav")
    (tmp_path / "t.wav").write_bytes(sphere_bytes(tone(2000, 0))[:1024 + 100])
    with pytest.raises(DataError, match="truncated"):
        read_audio(tmp_path / "t.wav")
    (tmp_path / "n.wav").write_bytes(b"hello world")
    with pytest.raises(DataError, match="neither"):
        read_audio(tmp_path / "n.wav")


def test_phn_segments_and_their_checks(tmp_path):
    path = tmp_path / "a.phn"
    path.write_text("0 100 h#\n100 250 SH\n250 400 ix\n")
    assert [(s.start, s.end, s.phone) for s in read_phn(path)] == [(0, 100, "h#"), (100, 250, "sh"), (250, 400, "ix")]
    for text, message in (("0 100 h#\n90 200 sh\n", "overlaps"), ("0 100 xx\n", "61 phones"),
                          ("0 a h#\n", "start end phone"), ("", "no phone segments")):
        path.write_text(text)
        with pytest.raises(DataError, match=message):
            read_phn(path)


def test_phone_sets_and_folding():
    assert len(PHONES_61) == 61 and len(PHONES_39) == 39
    assert set(PHONES_39) <= set(PHONES_61) | {"sil"}
    # Lee & Hon (1989): closures and pauses -> sil, allophones merged, glottal stop deleted.
    assert fold_phones(["h#", "bcl", "b", "ao", "ix", "q", "zh", "axr", "el", "pau"]) == \
        ["sil", "sil", "b", "aa", "ih", "sh", "er", "l", "sil"]
    assert all(FOLD_39[p] == p for p in PHONES_39 if p != "sil")
    with pytest.raises(ValueError, match="61 phones"):
        fold_phones(["xx"])


def test_speaker_lists():
    assert len(CORE_TEST_SPEAKERS) == 24 and len(DEV_SPEAKERS) == 50
    assert not CORE_TEST_SPEAKERS & DEV_SPEAKERS
    # Two men and one woman from each of the 8 dialect regions.
    assert sum(s.startswith("f") for s in CORE_TEST_SPEAKERS) == 8


@pytest.mark.parametrize("upper, riff", [(True, False), (False, False), (True, True)])
def test_splits_exclude_sa_and_pick_speakers(tmp_path, upper, riff):
    root = fake_tree(tmp_path / "corpus" / "TIMIT", upper, riff)
    assert timit_root(tmp_path / "corpus") == root  # the tree may sit one level down
    speakers = {split: sorted({phn.parent.name.lower() for _, phn, _ in utterance_files(root, split)})
                for split in ("train", "valid", "test")}
    assert speakers == {"train": ["fcjf0", "mabc0"], "valid": ["faks0"], "test": ["mdab0"]}
    names = {phn.name.lower()[:-4] for _, phn, _ in utterance_files(root, "train")}
    assert names == {"si1027", "sx37"}
    assert len(utterance_files(root, "train", include_sa=True)) == 8


def test_utterances_carry_aligned_phones_and_features(tmp_path):
    root = fake_tree(tmp_path)
    utterances = load_timit(root, "test")
    assert [(u.speaker, u.sentence, u.dialect) for u in utterances] == [("mdab0", "si1027", "dr1"), ("mdab0", "sx37", "dr1")]
    first = utterances[0]
    count = 4800 + 160 * 8  # seed 6 + 2 (si1027 is the third sentence written)
    assert first.phones == PHONES and first.segments[0].start == 0 and first.segments[-1].end == count
    assert first.features.shape == (1 + (count - 400) // 160, 123)
    assert load_timit(root, "test", num_mels=20, energy=False, deltas=0)[0].features.shape[1] == 20


def test_not_a_timit_tree(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="not a TIMIT tree"):
        load_timit(tmp_path, "train")
    with pytest.raises(DataError, match="does not exist"):
        load_timit(tmp_path / "missing", "train")
    with pytest.raises(DataError, match="licensed"):
        TimitTask(None)
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no train utterances"):
        load_timit(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_timit(tmp_path, "dev")


def test_filterbank_shapes_and_invariants():
    bank = mel_filterbank(40, 512, RATE)
    assert bank.shape == (257, 40) and (bank >= 0).all() and (bank <= 1).all()
    assert (bank.argmax(0).diff() > 0).all()  # centres rise with the band index
    x = tone(8000, 3)
    feats = log_mel_features(x)
    assert feats.shape == (1 + (8000 - 400) // 160, feature_size()) and torch.isfinite(feats).all()
    # Scaling the signal by a shifts every log band energy by 2 log a (power spectrum).
    shifted = log_mel_features(2 * x, deltas=0)
    assert torch.allclose(shifted - log_mel_features(x, deltas=0), torch.full_like(shifted, 2 * math.log(2)), atol=1e-3)
    # The delta of a linear ramp is its slope (away from the repeated edges).
    ramp = torch.arange(10.0)[:, None] * torch.tensor([[1.0, -2.0]])
    deltas = add_deltas(ramp, 1)[:, 2:]
    assert torch.allclose(deltas[2:-2], torch.tensor([[1.0, -2.0]]).expand(6, 2))


def test_feature_statistics_match_concatenation(tmp_path):
    utterances = load_timit(fake_tree(tmp_path), "train")
    mean, std = feature_statistics(utterances)
    frames = torch.cat([u.features for u in utterances]).double()
    assert torch.allclose(mean.double(), frames.mean(0), atol=1e-4)
    assert torch.allclose(std.double(), frames.std(0, unbiased=False), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("train_phones", [39, 61])
def test_timit_task(tmp_path, train_phones):
    task = TimitTask(fake_tree(tmp_path), train_phones=train_phones, data_seed=3)
    assert task.input_size == 123 and task.output_size == train_phones + 1
    assert (task.metric, task.head) == ("ler", "every")
    frames = torch.cat([x for x, _ in task.examples["train"]])
    assert torch.allclose(frames.mean(0), torch.zeros(123), atol=1e-3)
    batch = task.train_batch(2, 0, 3)
    assert batch["inputs"].shape[1:] == (3, 123) and torch.equal(batch["inputs"], task.train_batch(2, 0, 3)["inputs"])
    labels = batch["targets"][0, : int(batch["target_lengths"][0])].tolist()
    phones = [task.phone_set[i - 1] for i in labels]
    expected = fold_phones(PHONES) if train_phones == 39 else PHONES
    assert phones == expected
    # Scoring always sees 39 phones: folded, glottal stop gone.
    assert [PHONES_39[i - 1] for i in task.score_labels(labels)] == fold_phones(PHONES)
    torch.manual_seed(0)
    from rnnreg.models.sequence_net import SequenceNet
    model = SequenceNet(task.input_size, task.output_size, head="every", bidirectional=True, hidden_size=8).eval()
    result = task.score(model, task.eval_batches("test", 2))
    assert math.isfinite(result["loss"]) and result["ler"] >= 0
