"""Generated sequence-to-sequence problems: copy, reverse and addition, over characters.

Copy and reverse are the toy transductions of Sutskever et al. (2014, sec. 3.3 motivates
reversing) and Graves et al. (2014, Neural Turing Machines, sec. 4.1): a random string of
``num_symbols`` symbols, to be echoed as is or backwards. Addition follows Zaremba & Sutskever
(2014, "Learning to execute") in spirit: "123+45" -> "168", numbers of min_length..max_length
digits, here in base ``num_symbols`` (10: ordinary decimal). Everything is a pure function of a
``torch.Generator``, so a seed fixes the data.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
ALPHABET = string.digits + string.ascii_lowercase + string.ascii_uppercase
PROBLEMS = ("copy", "reverse", "addition")
MAX_BASE = 36  # int(text, base) reads digits 0-9a-z


@dataclass(frozen=True)
class CharVocab:
    """PAD=0, BOS=1, EOS=2, then one id per character of ``symbols``."""
    symbols: str

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (no BOS/EOS)."""
        try:
            return [len(SPECIALS) + self.symbols.index(ch) for ch in text]
        except ValueError:
            raise ValueError(f"text {text!r} has a character outside {self.symbols!r}") from None

    def decode(self, ids: list[int] | Tensor) -> str:
        """The characters of ``ids`` up to the first EOS, skipping PAD and BOS."""
        chars = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i == EOS:
                break
            if i >= len(SPECIALS):
                chars.append(self.symbols[i - len(SPECIALS)])
        return "".join(chars)


def check_problem(problem: str, min_length: int, max_length: int, num_symbols: int) -> None:
    """Raise ValueError naming the argument that does not fit ``problem``."""
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {', '.join(PROBLEMS)}, got {problem!r}")
    for name, value in (("min_length", min_length), ("max_length", max_length), ("num_symbols", num_symbols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if min_length > max_length:
        raise ValueError(f"min_length ({min_length}) must be <= max_length ({max_length})")
    limit = MAX_BASE if problem == "addition" else len(ALPHABET)
    if not (2 if problem == "addition" else 1) <= num_symbols <= limit:
        raise ValueError(f"num_symbols for {problem} must be in [{2 if problem == 'addition' else 1}, "
                         f"{limit}], got {num_symbols}")


def problem_vocab(problem: str, num_symbols: int) -> CharVocab:
    """The one vocabulary of both sides: the symbols (digits of the base for addition), and '+'."""
    return CharVocab(ALPHABET[:num_symbols] + ("+" if problem == "addition" else ""))


def _to_base(value: int, base: int) -> str:
    digits = []
    while True:
        value, digit = divmod(value, base)
        digits.append(ALPHABET[digit])
        if value == 0:
            return "".join(reversed(digits))


def _number(length: int, base: int, generator: torch.Generator) -> int:
    """A number of exactly ``length`` digits (no leading zero; one digit may be 0)."""
    low = 0 if length == 1 else base ** (length - 1)
    span = base ** length - low
    # 31-bit chunks until their range exceeds the span 2**16-fold: the modulo bias stays below 2**-16.
    value, scale = 0, 1
    while scale < span * 2**16:
        value = value * 2**31 + int(torch.randint(0, 2**31, (1,), generator=generator))
        scale *= 2**31
    return low + value % span


def sample_pairs(problem: str, count: int, *, min_length: int, max_length: int, num_symbols: int,
                 generator: torch.Generator) -> list[tuple[str, str]]:
    """``count`` (source, target) strings of ``problem``; lengths uniform in [min_length, max_length]
    (addition: each operand's digits)."""
    check_problem(problem, min_length, max_length, num_symbols)
    if problem == "addition":
        sizes = torch.randint(min_length, max_length + 1, (count, 2), generator=generator).tolist()
        pairs = []
        for la, lb in sizes:
            a, b = _number(la, num_symbols, generator), _number(lb, num_symbols, generator)
            pairs.append((f"{_to_base(a, num_symbols)}+{_to_base(b, num_symbols)}", _to_base(a + b, num_symbols)))
        return pairs
    sizes = torch.randint(min_length, max_length + 1, (count,), generator=generator).tolist()
    symbols = torch.randint(0, num_symbols, (count, max_length), generator=generator).tolist()
    sources = ["".join(ALPHABET[s] for s in row[:n]) for row, n in zip(symbols, sizes)]
    return [(s, s if problem == "copy" else s[::-1]) for s in sources]


def to_batch(pairs: list[tuple[str, str]], vocab: CharVocab) -> dict[str, Tensor]:
    """Padded time-major tensors: source (S, B), source_lengths (B,); target_in (T, B) = BOS +
    target, target_out (T, B) = target + EOS, target_lengths (B,) = len(target) + 1; PAD after."""
    if not pairs:
        raise ValueError("pairs must not be empty")
    sources = [vocab.encode(s) for s, _ in pairs]
    targets = [vocab.encode(t) for _, t in pairs]
    return {"source": _pad([torch.tensor(s) for s in sources]),
            "source_lengths": torch.tensor([len(s) for s in sources]),
            "target_in": _pad([torch.tensor([BOS, *t]) for t in targets]),
            "target_out": _pad([torch.tensor([*t, EOS]) for t in targets]),
            "target_lengths": torch.tensor([len(t) + 1 for t in targets])}


def _pad(rows: list[Tensor]) -> Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, padding_value=PAD).long()  # [(L_b,)] -> (L, B)
