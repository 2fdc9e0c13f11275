"""Commands on a finished (or running) run directory: ``eval`` (each result also kept in
``RUN/evaluations.json``), ``generate``, ``plot``."""

from __future__ import annotations

import argparse

from ..runs.run_dir import open_run_dir
from . import eval_methods
from .common import say


def add_parsers(sub: argparse._SubParsersAction) -> None:
    # Each help text states its default in words: argparse's ArgumentDefaultsHelpFormatter prints
    # "(default: None)" for options whose default is decided later, which tells the user nothing.
    p = sub.add_parser("eval", help="evaluate a trained run on its validation or test split",
                       description="Evaluate RUN's best (or last) weights. Settings can be overridden, "
                                   "e.g. data.path=/data/ptb (a language model's vocabulary must match), "
                                   "or task.beam_size=8 to decode a seq2seq or CTC run by beam search.")
    p.add_argument("run", metavar="RUN", help="a run directory, e.g. runs/quickstart")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="settings to change (default: none)")
    p.add_argument("--split", choices=("valid", "test"), default="test", help="split to score (default: %(default)s)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the run's data.test_batch_size for "
                                                  "test, data.eval_batch_size for valid)")
    p.add_argument("--mc-samples", type=int, default=0,
                   help="MC-dropout evaluation with this many samples (default: %(default)s, no MC dropout)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best validation weights or the last checkpoint (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    eval_methods.add_arguments(p)
    p.set_defaults(func=evaluate_run)

    p = sub.add_parser("generate", help="sample text from a trained run")
    p.add_argument("run", metavar="RUN", help="a language model's run directory, e.g. runs/quickstart")
    p.add_argument("--length", type=int, default=500, help="tokens to sample (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature, lower is more conservative (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=0,
                   help="sample among the k most likely tokens (default: %(default)s, all tokens)")
    p.add_argument("--prime", default="", help="text to start from (default: none)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed for a repeatable sample (default: none, a different sample each time)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best validation weights or the last checkpoint (default: %(default)s)")
    p.set_defaults(func=generate_text)

    p = sub.add_parser("plot", help="PNG learning curves and hidden-norm trajectories of a run")
    p.add_argument("run", metavar="RUN", help="a run directory, e.g. runs/quickstart")
    p.add_argument("--out", help="output folder (default: RUN/plots)")
    p.add_argument("--norm-steps", type=int, default=1000,
                   help="time steps of validation text for the hidden-norm plot, 0 to skip it "
                        "(default: %(default)s)")
    p.set_defaults(func=plot_run_cmd)


def _positive(name: str, value: int | None) -> None:
    from .common import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")


def evaluate_run(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..runs.evaluations import EvaluationsError, append_evaluations, evaluation_record, read_evaluations
    from ..runs.trained import load_trained
    from ..tasks.lm_metrics import metric_value
    from .common import UsageError

    _positive("--batch-size", args.batch_size)
    if args.mc_samples < 0:
        raise UsageError(f"--mc-samples must be >= 0, got {args.mc_samples}")
    eval_methods.check_arguments(args)
    device = _device(args.device)
    run = open_run_dir(args.run)
    try:
        read_evaluations(run.path)       # an unreadable record file is refused before the work, not after
    except EvaluationsError as err:
        raise UsageError(str(err)) from None
    trained = load_trained(run, which=args.checkpoint, overrides=tuple(args.overrides), device=device)
    if trained.config.train.threads:     # the run's own thread count (a shared machine's setting)
        torch.set_num_threads(trained.config.train.threads)
    start = time.perf_counter()
    try:
        if eval_methods.asked(args):
            kept, metric = eval_methods.run(args, trained)
        else:
            metric, scores = trained.evaluate(args.split, batch_size=args.batch_size, mc_samples=args.mc_samples)
            kept = [_plain_result(args, metric, scores, time.perf_counter() - start)]
    except ValueError as err:            # MC dropout asked of a task that has none, a split too small
        raise UsageError(str(err)) from None
    # The batch size the split was scored with: a language model's is the run's test / eval batch
    # size unless --batch-size says otherwise (a task's own batching is left unrecorded: None).
    d, lm = trained.config.data, trained.spec.head == "lm"
    batch = 1 if eval_methods.asked(args) else (
        args.batch_size or ((d.test_batch_size if args.split == "test" else d.eval_batch_size) if lm else None))
    append_evaluations(run.path, [evaluation_record(
        method=r["method"], settings=r["settings"], loss=r["loss"], wall_s=r["wall_s"], split=args.split,
        metric=metric, value=r["value"] if "value" in r else metric_value(r["loss"], metric),
        checkpoint=args.checkpoint, step=trained.step, batch_size=batch, overrides=tuple(args.overrides))
        for r in kept])
    return 0


def _plain_result(args: argparse.Namespace, metric: str, scores: dict, wall_s: float) -> dict:
    """Print a plain (or MC-dropout) score; what its record keeps."""
    rest = "".join(f"  {k} {v:.4f}" for k, v in scores.items() if k not in ("loss", metric) and v is not None)
    mc = f" (MC dropout, {args.mc_samples} samples)" if args.mc_samples else ""
    say(f"{args.split}: loss {scores['loss']:.4f}  {metric} {scores[metric]:.4f}{rest}{mc}")
    method, settings = ("mc", {"samples": args.mc_samples}) if args.mc_samples else ("plain", {})
    return {"method": method, "settings": settings, "loss": scores["loss"], "wall_s": wall_s,
            "value": scores.get(metric)}


def _device(name: str):
    import torch

    from .common import UsageError

    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (torch.cuda.is_available() is False)")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: there {'is' if torch.cuda.device_count() == 1 else 'are'} "
                         f"{torch.cuda.device_count()} GPU(s) here")
    return device


def generate_text(args: argparse.Namespace) -> int:
    from ..runs.trained import load_trained
    from .common import UsageError

    _positive("--length", args.length)
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0, got {args.top_k}")
    trained = load_trained(open_run_dir(args.run), which=args.checkpoint)
    if trained.spec.vocab is None:
        raise UsageError(f"{args.run} trained a {trained.config.task.kind!r} task; "
                         "`rnnreg generate` samples from language models (try `rnnreg eval`)")
    say(trained.sample(prime=args.prime, length=args.length, temperature=args.temperature, top_k=args.top_k,
                       seed=args.seed))
    return 0


def plot_run_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runs.plots import plot_run, plot_run_hidden_norms
    from ..runs.trained import load_trained

    run = open_run_dir(args.run)
    out = Path(args.out) if args.out else run.plots
    paths = plot_run(run.path, out)
    if args.norm_steps and run.best.exists():
        paths.append(plot_run_hidden_norms(load_trained(run), out / "hidden_norms.png", args.norm_steps))
    for path in paths:
        say(f"wrote {path}")
    return 0
