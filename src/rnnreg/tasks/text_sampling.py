"""Text in, text out around ``models.generate``: encode a prime, sample, decode for reading."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..data.vocab import Vocabulary
from ..models import generate

log = logging.getLogger(__name__)

# PTB-char writes each character as a whitespace token and spells a word boundary "_".
_SPELLED_CHARS = ("ptb-char",)


def encode_prime(text: str, vocab: Vocabulary, level: str) -> torch.Tensor:
    """Token ids for ``text``; tokens the vocabulary lacks are dropped with a warning. An empty
    prime starts from the end-of-line token, as a document start would."""
    tokens = list(text) if level == "char" else text.split()
    known = [t for t in tokens if t in vocab.stoi]
    if len(known) < len(tokens):
        log.warning("prime: %d of %d tokens are not in the vocabulary and were dropped",
                    len(tokens) - len(known), len(tokens))
    if not known:
        known = [next((t for t in ("<eos>", "\n") if t in vocab.stoi), vocab.itos[0])]
    return torch.tensor([vocab.stoi[t] for t in known], dtype=torch.long)


def decode_tokens(ids: list[int], vocab: Vocabulary, level: str, dataset: str = "") -> str:
    """Readable text: characters joined, words spaced, ``<eos>`` as a line break."""
    tokens = [vocab.itos[i] for i in ids]
    if level == "char":
        return "".join(tokens)
    if dataset in _SPELLED_CHARS:
        return "".join("\n" if t == "<eos>" else " " if t == "_" else t for t in tokens)
    return " ".join(tokens).replace(" <eos> ", "\n").replace("<eos>", "\n")


def sample_text(model: nn.Module, vocab: Vocabulary, level: str, *, prime: str = "", length: int = 300,
                temperature: float = 1.0, top_k: int = 0, seed: int | None = None,
                dataset: str = "") -> str:
    """The prime followed by ``length`` sampled tokens, as text."""
    ids = encode_prime(prime, vocab, level)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    sampled = generate(model, ids, length, temperature=temperature, top_k=top_k, generator=generator)
    head = prime if prime else ""
    return head + ("" if level == "char" or not head else " ") + decode_tokens(sampled.tolist(), vocab, level, dataset)
