"""Every shipped preset at a size that trains in a second: its model family, regularizers,
penalties and optimizer kept, its sizes, budgets and data shrunk (a language model reads the
small generated corpus of :mod:`lm_fixtures`; pixel MNIST reads the shared data folder)."""

from __future__ import annotations

from pathlib import Path

from rnnreg.config import load_config, preset_names

from helpers import shared_data
from lm_fixtures import TINY

PRESETS = preset_names()


def buildable(name: str) -> bool:
    """TIMIT is licensed: its presets train only where the user has the corpus."""
    return load_config(name).data.dataset != "timit"


def tiny_overrides(name: str, out: Path, corpus: Path | None = None) -> list[str]:
    """Overrides that shrink preset ``name`` (``corpus``: the folder a language model reads)."""
    config = load_config(name)
    m, kind = config.model, config.task.kind
    extra = [f"train.out_dir={out}", "train.max_steps=6", "train.max_minutes=0.0", "train.log_every=1",
             "train.threads=1", "train.epochs=2", "train.patience=0", "train.eval_every=0",
             "train.checkpoint_every=0"]
    if kind == "lm":
        sizes = [24] * (m.num_layers - 1) + [16 if m.tie_weights else 24]
        # TINY's lr 20 is an SGD rate; Adam presets keep their own (an IRNN diverges at Adam lr 20).
        drop = ("model.num_layers", "model.tie_weights") + (("optim.lr",) if config.optim.optimizer == "adam" else ())
        tiny = [o for o in TINY if not o.startswith(drop)]
        head = ["model.adaptive_cutoffs=[4, 8]"] if m.softmax == "adaptive" else []
        return [*extra, *tiny, *head, f"data.dataset={corpus}", "train.finetune_epochs=0", "optim.finetune_lr=0.0",
                f"model.hidden_sizes={sizes}" if m.hidden_sizes else "model.hidden_size=24"]
    periods = len(m.clockwork_periods)
    extra += [f"model.hidden_size={4 * periods if periods else 8}", "data.batch_size=4", "data.eval_batch_size=8"]
    if m.hidden_sizes:
        extra.append(f"model.hidden_sizes={[8] * len(m.hidden_sizes)}")
    if kind in ("adding", "missing", "seq2seq", "ctc"):
        extra += ["task.train_size=16", "task.valid_size=8", "task.test_size=8"]
    if kind == "mnist":
        extra += [f"data.path={shared_data() / 'mnist'}", "task.train_size=64", "task.valid_size=8"]
    if kind in ("adding", "missing"):
        extra += ["task.seq_len=12"]
    return extra
