"""A tiny word-level corpus with learnable structure, and a config that trains on it in seconds."""

from __future__ import annotations

import random
from pathlib import Path

from rnnreg.config import Config, load_config

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "she", "he"]
VERBS = ["sees", "likes", "finds", "wants"]
OBJECTS = ["the ball", "a red box", "some bread", "the small house", "it"]


def write_corpus(folder: Path, *, seed: int = 0, lines=(600, 60, 60)) -> Path:
    """Sentences from a small grammar: subject verb object, one per line (word level)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines):
        text = "\n".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ."
                         for _ in range(n))
        (folder / f"{split}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


TINY = ["model.embedding_size=16", "model.hidden_size=24", "model.num_layers=2", "model.tie_weights=false",
        "data.batch_size=4", "data.eval_batch_size=4", "data.test_batch_size=2", "data.bptt=12",
        "data.min_bptt=4", "data.bptt_std=2.0", "train.log_every=1", "train.sample_length=20",
        "optim.lr=20.0", "optim.weight_decay=0.0"]


def tiny_config(folder: Path, out_dir: Path, *extra: str, preset: str = "awd-lstm-ptb") -> Config:
    """The preset's regularizers and optimizer at a size that trains in a few seconds."""
    overrides = [f"data.dataset={folder}", f"train.out_dir={out_dir}", "train.epochs=2", *TINY, *extra]
    return load_config(preset, overrides)


def train_tiny_run(tmp: Path, *extra: str):
    """A tiny AWD-LSTM run (``tiny_config`` on a generated corpus, one thread, torch's thread
    count restored after), trained; ``extra``: more overrides, a step budget among them."""
    import torch

    from rnnreg.runs.run_dir import new_run_dir
    from rnnreg.training.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = tiny_config(write_corpus(tmp / "corpus"), tmp / "runs", "train.threads=1", *extra)
        run = new_run_dir(config.train.out_dir, config.name)
        run.write_config(config)
        train(config, run)
    finally:
        torch.set_num_threads(threads)
    return run


def run_config(config: Config, **kw):
    """A new run directory for ``config`` (its config written), trained: (run, summary)."""
    from rnnreg.runs.run_dir import new_run_dir
    from rnnreg.training.loop import train

    run = new_run_dir(config.train.out_dir, config.name)
    run.write_config(config)
    return run, train(config, run, **kw)


def stop_after(n: int):
    """A ``stop_requested`` callback that asks the loop to stop at its ``n``-th poll (one per step)."""
    calls = {"n": 0}

    def requested() -> bool:
        calls["n"] += 1
        return calls["n"] == n
    return requested
