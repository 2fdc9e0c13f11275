"""Commands on a finished (or running) run directory: ``eval``, ``generate``, ``plot``."""

from __future__ import annotations

import argparse

from ..runs.run_dir import open_run_dir
from .common import say


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("eval", help="evaluate a trained run on its validation or test split", formatter_class=fmt,
                       description="Evaluate RUN's best (or last) weights. Settings can be overridden, "
                                   "e.g. data.path=/data/ptb (a language model's vocabulary must match), "
                                   "or task.beam_size=8 to decode a seq2seq or CTC run by beam search.")
    p.add_argument("run", metavar="RUN")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--batch-size", type=int, help="default: data.test_batch_size / data.eval_batch_size")
    p.add_argument("--mc-samples", type=int, default=0, help="MC-dropout evaluation with this many samples")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.set_defaults(func=evaluate_run)

    p = sub.add_parser("generate", help="sample text from a trained run", formatter_class=fmt)
    p.add_argument("run", metavar="RUN")
    p.add_argument("--length", type=int, default=500, help="tokens to sample")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
    p.add_argument("--prime", default="", help="text to start from")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.set_defaults(func=generate_text)

    p = sub.add_parser("plot", help="PNG learning curves and hidden-norm trajectories of a run", formatter_class=fmt)
    p.add_argument("run", metavar="RUN")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    p.add_argument("--norm-steps", type=int, default=1000,
                   help="time steps of validation text for the hidden-norm plot (0: skip it)")
    p.set_defaults(func=plot_run_cmd)


def _positive(name: str, value: int | None) -> None:
    from .common import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")


def evaluate_run(args: argparse.Namespace) -> int:
    from ..tasks.build_lm import build_corpus, metric_for
    from ..config import apply_overrides, config_from_dict, config_to_dict
    from ..data import batchify
    from ..tasks.lm_evaluation import evaluate, evaluate_mc
    from ..runs.metrics import metric_value
    from ..runs.trained import load_trained

    _positive("--batch-size", args.batch_size)
    run = open_run_dir(args.run)
    if run.read_config().task.kind != "lm":
        return _evaluate_task(run, args)
    trained = load_trained(run, which=args.checkpoint)
    config = config_from_dict(apply_overrides(config_to_dict(trained.config), args.overrides))
    corpus = build_corpus(config.data)
    trained.check_corpus(corpus)
    default = config.data.test_batch_size if args.split == "test" else config.data.eval_batch_size
    data = batchify(getattr(corpus, args.split), args.batch_size or default)  # (N,) -> (N // B, B)
    metric = metric_for(config, corpus)
    if args.mc_samples:
        loss = evaluate_mc(trained.model, data, config.data.bptt, args.mc_samples)
    else:
        loss = evaluate(trained.model, data, config.data.bptt)
    mc = f" (MC dropout, {args.mc_samples} samples)" if args.mc_samples else ""
    say(f"{args.split}: loss {loss:.4f}  {metric} {metric_value(loss, metric):.4f}{mc}")
    return 0


def _evaluate_task(run, args: argparse.Namespace) -> int:
    from ..tasks.base import on_device
    from ..runs.trained_task import load_trained_task
    from .common import UsageError

    if args.mc_samples:
        raise UsageError("--mc-samples applies to language models; sequence tasks are scored deterministically")
    trained = load_trained_task(run, which=args.checkpoint, overrides=tuple(args.overrides))
    batches = trained.task.eval_batches(args.split, args.batch_size or trained.config.data.eval_batch_size)
    scores = trained.task.score(trained.model, on_device(batches, "cpu"))
    metric = trained.task.metric
    rest = "".join(f"  {k} {v:.4f}" for k, v in scores.items() if k not in ("loss", metric))
    say(f"{args.split}: loss {scores['loss']:.4f}  {metric} {scores[metric]:.4f}{rest}")
    return 0


def generate_text(args: argparse.Namespace) -> int:
    from ..tasks.text_sampling import sample_text
    from ..runs.trained import load_trained
    from .common import UsageError

    _positive("--length", args.length)
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0, got {args.top_k}")
    run = open_run_dir(args.run)
    if run.read_config().task.kind != "lm":
        raise UsageError(f"{args.run} trained a {run.read_config().task.kind!r} task; "
                         "`rnnreg generate` samples from language models (try `rnnreg eval`)")
    trained = load_trained(run, which=args.checkpoint)
    say(sample_text(trained.model, trained.vocab, trained.level, prime=args.prime, length=args.length,
                    temperature=args.temperature, top_k=args.top_k, seed=args.seed, dataset=trained.dataset))
    return 0


def plot_run_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..runs.plots import hidden_norms, plot_hidden_norms, plot_run

    run = open_run_dir(args.run)
    out = Path(args.out) if args.out else run.plots
    paths = plot_run(run.path, out)
    if args.norm_steps and run.best.exists():
        paths.append(_plot_norms(run, out, args.norm_steps, hidden_norms, plot_hidden_norms))
    for path in paths:
        say(f"wrote {path}")
    return 0


def _plot_norms(run, out, steps, hidden_norms, plot_hidden_norms):
    """Per-layer ||h_t|| over the first ``steps`` validation tokens (Krueger & Memisevic 2016, Fig. 3)."""
    import torch

    if run.read_config().task.kind != "lm":
        return _plot_task_norms(run, out, steps, hidden_norms, plot_hidden_norms)

    from ..tasks.build_lm import build_corpus
    from ..data import batchify
    from ..runs.trained import load_trained

    trained = load_trained(run)
    corpus = build_corpus(trained.config.data)
    trained.check_corpus(corpus)
    data = batchify(corpus.valid, 8)[:steps]  # (N,) -> (T, 8): eight parallel validation streams
    with torch.no_grad():
        out_seq = trained.model(data)
    path = out / "hidden_norms.png"
    plot_hidden_norms(hidden_norms(out_seq.raw), path,
                      title=f"{trained.config.name}: hidden-state norm per layer over {data.shape[0]} steps")
    return path


def _plot_task_norms(run, out, steps, hidden_norms, plot_hidden_norms):
    """The same for a sequence task: its first validation batch, up to ``steps`` time steps."""
    import torch

    from ..runs.trained_task import load_trained_task

    trained = load_trained_task(run)
    batch = next(iter(trained.task.eval_batches("valid", 16)))
    with torch.no_grad():
        raw = [h[:steps] for h in trained.task.forward(trained.model, batch).raw]  # (T, B, H) each
    norms = hidden_norms(raw)                                                      # (T, B) each
    lengths = trained.task.lengths(batch)
    if lengths is not None:                    # padding is no state: leave it out of the bands
        padded = torch.arange(raw[0].shape[0]).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
        norms = {layer: values.masked_fill(padded, float("nan")) for layer, values in norms.items()}
    path = out / "hidden_norms.png"
    plot_hidden_norms(norms, path,
                      title=f"{trained.config.name}: hidden-state norm per layer over {raw[0].shape[0]} steps")
    return path
