"""End-to-end training throughput of rnnreg's language models, as a ratio to a plain torch.nn one.

Each configuration runs three contenders in the same run on the same synthetic tokens: the model
its preset trains (``rnnreg.tasks.build.build_model(config, spec)``, penalties and
optimizer from the preset), the same model with every regularizer off, and a plain language model
(nn.Embedding -> torch.nn.LSTM -> nn.Linear, torch SGD, no regularization) of the same sizes. A
timed step is what ``rnnreg.training.loop.train`` does per window: forward from the detached carried state,
cross-entropy + penalties, backward, gradient clipping, the finiteness check, optimizer step.
Repeats rotate which contender goes first; ratios are medians of per-repeat ratios.
stdout carries one JSON line per comparison and nothing else; progress and a table go to stderr.

    python benchmarks/bench_lm.py                          # zaremba-medium and awd-lstm (minutes)
    python benchmarks/bench_lm.py --quick                  # smoke run with tiny sizes (seconds)
    python benchmarks/bench_lm.py --configs awd-lstm --repeats 5 --steps 10 --out awd.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnreg.tasks.base import ModelSpec
from rnnreg.tasks.build import build_model
from rnnreg.training.optimizers import build_training_optimizer
from rnnreg.training.penalty_terms import penalty_terms
from rnnreg.config import Config, load_config
from rnnreg.models.language_model import lm_layer_sizes

from bench_layers import json_stdout  # the script's folder is on sys.path when it runs


@dataclass(frozen=True)
class Setup:
    preset: str
    batch: int
    bptt: int  # fixed window length (the presets' variable bptt is off, for comparability)
    vocab: int


CONFIGS = {
    "zaremba-medium": Setup("zaremba-medium", 20, 35, 10_000),
    "awd-lstm": Setup("awd-lstm-ptb", 20, 70, 10_000),
    "awd-lstm-b80": Setup("awd-lstm-ptb", 80, 70, 10_000),
}
DEFAULT_CONFIGS = ("zaremba-medium", "awd-lstm")
# Tiny stand-ins with the presets' structure (tied or not, equal or AWD-shaped sizes): smoke runs only.
QUICK_MODEL = {"zaremba-medium": ["model.embedding_size=16", "model.hidden_size=16"],
               "awd-lstm-ptb": ["model.embedding_size=16", "model.hidden_size=32"]}
QUICK_SETUP = {"batch": 4, "bptt": 6, "vocab": 50}
# Everything that regularizes, switched off: the "rnnreg-noreg" contender.
NO_REGULARIZATION = ["model.embed_p=0.0", "model.input_p=0.0", "model.hidden_p=0.0", "model.output_p=0.0",
                     "model.nonrecurrent_p=0.0", "model.weight_p=0.0", "penalties.ar=0.0", "penalties.tar=0.0",
                     "optim.weight_decay=0.0"]
CONTENDERS = ("plain", "rnnreg", "rnnreg-noreg")
COMPARISONS = (("rnnreg", "plain"), ("rnnreg-noreg", "plain"), ("rnnreg", "rnnreg-noreg"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class PlainLM(nn.Module):
    """The baseline: nn.Embedding -> torch.nn.LSTM -> nn.Linear, no regularization. One multi-layer
    nn.LSTM when every layer has the embedding's width (Zaremba et al.), else one per layer (as
    AWD-LSTM's 400-1150-1150-400 stack is built in its reference code)."""

    def __init__(self, vocab: int, embedding: int, sizes: list[int], tie: bool) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embedding)
        if set(sizes) == {embedding}:
            self.rnns = nn.ModuleList([nn.LSTM(embedding, embedding, len(sizes))])
        else:
            self.rnns = nn.ModuleList(nn.LSTM(i, h) for i, h in zip([embedding, *sizes[:-1]], sizes))
        self.decoder = nn.Linear(sizes[-1], vocab)
        if tie:
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens: Tensor, state: list | None) -> tuple[Tensor, list]:
        x = self.encoder(tokens)  # (T, B) -> (T, B, E)
        state = state or [None] * len(self.rnns)
        new_state = []
        for rnn, hx in zip(self.rnns, state):
            x, hx = rnn(x, hx)  # (T, B, H_l)
            new_state.append(hx)
        return self.decoder(x), new_state  # (T, B, V)


def detach(state):
    """The carried state cut from the graph (truncated BPTT), whatever its nesting."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        return type(state)(detach(s) for s in state)
    return state


def finish_step(loss: Tensor, model: nn.Module, optimizer, clip: float) -> None:
    """train.py's tail of a step: backward, clip, finiteness check, optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = nn.utils.clip_grad_norm_(params, clip if clip else math.inf)
    if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
        raise RuntimeError("non-finite loss or gradient norm in a benchmark step")
    optimizer.step()


def rnnreg_step(config: Config, vocab: int) -> Callable[[Tensor, Tensor, object], object]:
    """One training step of the preset's model, penalties and optimizer, as in rnnreg.training.loop."""
    model = build_model(config, ModelSpec(vocab, vocab, "lm")).train()
    optimizer = build_training_optimizer(config.optim, model.parameters())

    def step(x: Tensor, y: Tensor, hidden):
        hidden = detach(hidden)
        out = model(x, hidden, targets=y)
        ce = out.nll.mean()  # (T, B) float32 -log p(target), as the loop's language-model task takes it
        # Every penalty of the preset, built as the training loop builds them.
        terms = penalty_terms(config.penalties, out, model.parameters(), like=ce, incoming=hidden)
        loss = ce + terms.ar + terms.tar + terms.norm_stabilizer + terms.weight
        finish_step(loss, model, optimizer, config.optim.clip)
        return out.state
    return step


def plain_step(config: Config, vocab: int) -> Callable[[Tensor, Tensor, object], object]:
    """The same step for PlainLM with torch.optim.SGD at the preset's lr and clip."""
    m = config.model
    sizes = lm_layer_sizes(m.embedding_size, m.hidden_size, m.num_layers, m.hidden_sizes or None, m.tie_weights,
                           m.softmax)
    model = PlainLM(vocab, m.embedding_size, sizes, m.tie_weights).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.optim.lr)

    def step(x: Tensor, y: Tensor, hidden):
        logits, state = model(x, detach(hidden))
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))  # (T*B, V) vs (T*B,)
        finish_step(loss, model, optimizer, config.optim.clip)
        return state
    return step


class Contender:
    """A step function walking its own way through the token stream, carrying its own state."""

    def __init__(self, step, data: Tensor, bptt: int) -> None:
        self.step_fn, self.data, self.bptt = step, data, bptt
        self.windows = (data.shape[0] - 1) // bptt
        self.index, self.hidden = 0, None

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` consecutive training steps."""
        start = time.perf_counter()
        for _ in range(steps):
            i = (self.index % self.windows) * self.bptt
            x, y = self.data[i:i + self.bptt], self.data[i + 1:i + 1 + self.bptt]  # (T, B) each
            self.hidden = self.step_fn(x, y, self.hidden)
            self.index += 1
        return time.perf_counter() - start


def configs_for(setup: Setup, quick: bool) -> dict[str, Config]:
    shrink = QUICK_MODEL[setup.preset] if quick else []
    fixed = [f"data.batch_size={setup.batch}", f"data.bptt={setup.bptt}", "data.variable_bptt=false"]
    return {"plain": load_config(setup.preset, fixed + shrink),
            "rnnreg": load_config(setup.preset, fixed + shrink),
            "rnnreg-noreg": load_config(setup.preset, fixed + shrink + NO_REGULARIZATION)}


def measure(setup: Setup, quick: bool, repeats: int, steps: int, warmup: int) -> tuple[dict, dict]:
    """Build the three contenders, warm them up, then time ``steps`` steps of each per repeat."""
    configs = configs_for(setup, quick)
    data = torch.randint(setup.vocab, (16 * setup.bptt + 1, setup.batch),
                         generator=torch.Generator().manual_seed(0))  # (N, B): synthetic uniform tokens
    contenders = {}
    for name in CONTENDERS:
        torch.manual_seed(0)
        make = plain_step if name == "plain" else rnnreg_step
        contenders[name] = Contender(make(configs[name], setup.vocab), data, setup.bptt)
    for contender in contenders.values():
        contender.run(warmup)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for r in range(repeats):
        order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]  # rotate who goes first: drift cancels
        for name in order:
            times[name].append(contenders[name].run(steps))
    return times, configs["rnnreg"]


def json_line(config_name: str, setup: Setup, config: Config, times: dict, pair: tuple[str, str],
              args: argparse.Namespace) -> dict:
    cand, base = pair
    tokens = setup.batch * setup.bptt * args.steps
    model = config.model
    return {"config": config_name, "preset": setup.preset, "candidate": cand, "baseline": base,
            "tokens_per_s": tokens / statistics.median(times[cand]),
            "baseline_tokens_per_s": tokens / statistics.median(times[base]),
            "ratio": statistics.median(b / c for b, c in zip(times[base], times[cand])),
            "batch": setup.batch, "bptt": setup.bptt, "vocab": setup.vocab,
            "embedding": model.embedding_size, "hidden": model.hidden_size, "layers": model.num_layers,
            "optimizer": {"rnnreg": config.optim.optimizer, "plain": "torch.optim.SGD"},
            "data": "synthetic uniform random tokens", "repeats": args.repeats, "steps": args.steps,
            "warmup": args.warmup, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "quick": args.quick}


def table(rows: list[dict]) -> str:
    lines = [f"{'config':<16}{'candidate':<14}{'baseline':<14}{'tok/s':>9}{'base tok/s':>12}{'ratio':>7}"]
    lines += [f"{r['config']:<16}{r['candidate']:<14}{r['baseline']:<14}{r['tokens_per_s']:>9.0f}"
              f"{r['baseline_tokens_per_s']:>12.0f}{r['ratio']:>7.3f}" for r in rows]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated subset of {','.join(CONFIGS)} (default: {','.join(DEFAULT_CONFIGS)})")
    p.add_argument("--repeats", type=int, help="rotated repeats (default 3; 1 with --quick)")
    p.add_argument("--steps", type=int, help="timed training steps per contender per repeat (default 10; 2 with --quick)")
    p.add_argument("--warmup", type=int, help="untimed steps per contender first (default 5; 1 with --quick)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's default; 1 with --quick)")
    p.add_argument("--out", help="also write the JSON lines to this file")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one thread: a smoke run that measures nothing")
    args = p.parse_args(argv)
    defaults = (1, 2, 1) if args.quick else (3, 10, 5)
    for flag, default in zip(("repeats", "steps", "warmup"), defaults):
        setattr(args, flag, default if getattr(args, flag) is None else getattr(args, flag))
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        p.error("--repeats, --steps and --threads must be positive, --warmup >= 0")
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown or not args.configs:
        p.error(f"unknown or empty --configs: {', '.join(unknown)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_stdout()
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    rows = []
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext() as sink:
        for name in args.configs:
            setup = CONFIGS[name] if not args.quick else Setup(CONFIGS[name].preset, **QUICK_SETUP)
            log(f"{name}: B={setup.batch}, T={setup.bptt}, V={setup.vocab}, {torch.get_num_threads()} threads ...")
            times, config = measure(setup, args.quick, args.repeats, args.steps, args.warmup)
            for pair in COMPARISONS:
                row = json_line(name, setup, config, times, pair, args)
                rows.append({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()})
                for stream in filter(None, (out, sink)):
                    stream.write(json.dumps(rows[-1]) + "\n")
    log(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
