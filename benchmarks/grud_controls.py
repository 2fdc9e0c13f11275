"""GRU-D against two GRU controls on the synthetic informative-missingness benchmark.

Che et al. (2018) argue that GRU-D wins because it reads the masks ("informative missingness").
This script separates that from GRU-D's decays: the same data and training for
  - grud:     GRU-D (rnnreg.models.grud_net.GRUDNet), reading x, mask, delta and x_last;
  - gru:      a GRU on mean-imputed values, Che et al.'s GRU-Mean (what MissingValuesTask feeds a
              non-GRU-D model);
  - gru+mask: a GRU on [mean-imputed values, mask]: no time gaps, no decays, only the mask added.
Everything (data, sizes, optimizer, lr, clip, batch sizes, epochs, seed) comes from the preset
grud-synthetic, whose [model] cell is replaced by "gru" for the controls. Each epoch ends with a
validation; the weights with the best validation accuracy (strictly better than any earlier) are
scored on the test split, as rnnreg.training.task_loop does. Unlike that loop there is no max_minutes budget.

--uninformative regenerates the data with rate_effect=0 (rnnreg.tasks.synthetic_missing): every
variable is then measured at the series' base rate whatever the class, and only the weak value
shift (value_effect) is left to find.

    python benchmarks/grud_controls.py                       # the preset's data
    python benchmarks/grud_controls.py --uninformative       # missingness without the class
    python benchmarks/grud_controls.py --seeds 1111,2222 --epochs 5
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from rnnreg.training.optimizers import build_training_optimizer
from rnnreg.tasks.build import build_task_model
from rnnreg.config import Config, load_config
from rnnreg.data.missing_values import IrregularSeries
from rnnreg.tasks.missing import SPLITS, MissingValuesTask
from rnnreg.tasks.synthetic_missing import make_missing_benchmark

PRESET = "grud-synthetic"


class MaskInputTask(MissingValuesTask):
    """The same task, but a (non-GRU-D) model reads [mean-imputed x, mask], (T, B, 2D)."""

    def __init__(self, splits: dict[str, IrregularSeries], *, data_seed: int) -> None:
        super().__init__(splits, data_seed=data_seed)
        self.input_size = 2 * self.input_size  # build_task_model sizes the GRU's input from this

    def forward(self, model, batch):
        imputed = torch.where(batch["mask"] > 0, batch["x"], self.x_mean)  # (T, B, D): GRU-Mean's input
        return model(torch.cat([imputed, batch["mask"]], -1), lengths=batch["lengths"])  # (T, B, 2D)


def make_splits(config: Config, uninformative: bool) -> dict[str, IrregularSeries]:
    """The splits of MissingValuesTask.synthetic (one generator: train, then valid, then test),
    with rate_effect=0 when ``uninformative``."""
    t = config.task
    generator = torch.Generator().manual_seed(t.data_seed)
    sizes = {"train": t.train_size, "valid": t.valid_size, "test": t.test_size}
    extra = {"rate_effect": 0.0} if uninformative else {}
    return {split: make_missing_benchmark(sizes[split], seq_len=t.seq_len, num_features=t.num_features,
                                          missing_p=t.missing_p, generator=generator, **extra)
            for split in SPLITS}


def train_and_test(config: Config, task: MissingValuesTask, seed: int, epochs: int) -> dict:
    """Train as rnnreg.training.task_loop does (no penalties: the preset has none); test the best-valid weights."""
    batch_size, eval_size = config.data.batch_size, config.data.eval_batch_size
    torch.manual_seed(seed)
    model = build_task_model(config, task)
    optimizer = build_training_optimizer(config.optim, model.parameters())
    best, start = {"valid": -math.inf}, time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for index in range(task.num_train_batches(batch_size)):
            batch = task.train_batch(epoch, index, batch_size)
            loss = task.loss(task.forward(model, batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip or math.inf)
            optimizer.step()
        model.eval()
        valid = task.score(model, task.eval_batches("valid", eval_size))["accuracy"]
        if valid > best["valid"]:
            best = {"valid": valid, "epoch": epoch, "weights": copy.deepcopy(model.state_dict())}
    model.load_state_dict(best["weights"])
    test = task.score(model, task.eval_batches("test", eval_size))
    return {"valid": best["valid"], "epoch": best["epoch"], "accuracy": test["accuracy"], "auc": test["auc"],
            "seconds": time.perf_counter() - start}


def main() -> None:
    preset = load_config(PRESET)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=str(preset.train.seed), help="comma-separated model seeds")
    parser.add_argument("--epochs", type=int, default=preset.train.epochs)
    parser.add_argument("--uninformative", action="store_true", help="rate_effect=0: missingness without the class")
    args = parser.parse_args()
    if any((preset.penalties.ar, preset.penalties.tar, preset.penalties.norm_stabilizer,
            preset.penalties.l1, preset.penalties.l2)):
        parser.error(f"preset {PRESET} has penalties, which this script does not apply")
    torch.set_num_threads(1)  # a step loop of small matrices: a second thread only synchronises
    seeds = [int(s) for s in args.seeds.split(",")]
    gru = load_config(PRESET, ["model.cell=gru"])
    splits = make_splits(preset, args.uninformative)
    plain = MissingValuesTask(splits, data_seed=preset.task.data_seed)
    contenders = {"grud": (preset, plain), "gru": (gru, plain),
                  "gru+mask": (gru, MaskInputTask(splits, data_seed=preset.task.data_seed))}
    missingness = "uninformative (rate_effect=0)" if args.uninformative else "informative (preset)"
    print(f"{PRESET}, {missingness}, {args.epochs} epochs, torch {torch.__version__}, 1 thread\n")
    print("| model | seed | best valid acc (epoch) | test acc | test AUC | time (s) |")
    print("|---|---|---|---|---|---|")
    for name, (config, task) in contenders.items():
        for seed in seeds:
            r = train_and_test(config, task, seed, args.epochs)
            print(f"| {name} | {seed} | {r['valid']:.1f} ({r['epoch']}) | {r['accuracy']:.1f} | {r['auc']:.3f} "
                  f"| {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
