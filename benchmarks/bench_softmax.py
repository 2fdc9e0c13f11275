"""Training speed and memory of the adaptive softmax against the full softmax, at WikiText-2 and
WikiText-103 vocabulary sizes.

Both contenders are the same rnnreg language model (embedding E -> one LSTM layer of E units ->
output layer, tied weights) trained by the loop's step (forward with the targets, mean NLL,
backward, clipping, SGD), on the same synthetic Zipf-distributed tokens (word id = frequency
rank, as a real corpus's frequency order makes it): ``softmax = "full"`` (a (V, E) decoder and
cross-entropy over all V words) and ``softmax = "adaptive"`` (Grave et al. 2017, tied, div_value
1, Merity et al. 2018's cutoffs for WikiText-103). Each contender runs in its own fresh process,
so its peak resident memory is its own: "step MiB" is the peak RSS during the timed steps minus
the RSS before the first step (model, optimizer and data already built), i.e. what one training
step allocates. The ratio is full-softmax seconds per step over adaptive seconds per step, medians
of repeats in the same run. stdout carries one JSON line per vocabulary; a table goes to stderr.

    python benchmarks/bench_softmax.py                     # WT2 and WT103 sizes (minutes)
    python benchmarks/bench_softmax.py --quick             # tiny vocabulary (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

from rnnreg.models import RNNLanguageModel

from bench_layers import json_stdout, log, peak_flops  # the script's folder is on sys.path when it runs

VOCABS = {"wikitext-2": (33_278, (2_800, 20_000)), "wikitext-103": (267_735, (2_800, 20_000, 76_000))}
QUICK = {"quick": (2_000, (200, 800))}


def zipf_tokens(vocab: int, steps: int, batch: int, seed: int = 0) -> torch.Tensor:
    """(steps + 1, batch) ids drawn with p(id) proportional to 1 / (id + 1): natural text's law."""
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    draws = torch.multinomial(weights, (steps + 1) * batch, replacement=True,
                              generator=torch.Generator().manual_seed(seed))
    return draws.view(steps + 1, batch)  # (T + 1, B)


def rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(vocab: int, cutoffs: tuple[int, ...], softmax: str, size: int, bptt: int, batch: int,
           steps: int, threads: int) -> dict:
    """Build one contender, then time ``steps`` training steps after one warm-up step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    extra = {"adaptive_cutoffs": cutoffs, "adaptive_div_value": 1.0} if softmax == "adaptive" else {}
    model = RNNLanguageModel(vocab, embedding_size=size, hidden_size=size, num_layers=1, tie_weights=True,
                             softmax=softmax, **extra).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    data = zipf_tokens(vocab, bptt, batch)
    x, y = data[:-1], data[1:]  # (T, B) each
    before = rss_mib()

    def step() -> None:
        loss = model(x, targets=y).nll.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()

    step()  # warm-up: allocator, thread pool
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"seconds": times, "step_mib": rss_mib() - before, "params": sum(p.numel() for p in model.parameters())}


def run_worker(args: argparse.Namespace, name: str, softmax: str) -> dict:
    vocab, cutoffs = (QUICK if args.quick else VOCABS)[name]
    call = (f"import json, sys; sys.path.insert(0, {str(sys.path[0])!r}); from bench_softmax import worker; "
            f"print(json.dumps(worker({vocab}, {cutoffs}, {softmax!r}, {args.size}, {args.bptt}, "
            f"{args.batch}, {args.steps}, {args.threads})))")
    done = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocabs", default=",".join(VOCABS), help=f"comma-separated subset of {','.join(VOCABS)}")
    p.add_argument("--size", type=int, default=400, help="embedding = hidden size (default 400, AWD's E)")
    p.add_argument("--bptt", type=int, default=35, help="window length (default 35)")
    p.add_argument("--batch", type=int, default=10, help="batch size (default 10)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per process (default 5)")
    p.add_argument("--repeats", type=int, default=2, help="processes per contender, alternated (default 2)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    p.add_argument("--quick", action="store_true", help="a 2,000-word vocabulary and tiny sizes: a smoke run")
    args = p.parse_args(argv)
    if min(args.size, args.bptt, args.batch, args.steps, args.repeats, args.threads) < 1:
        p.error("--size, --bptt, --batch, --steps, --repeats and --threads must be positive")
    if args.quick:
        # a smoke run measures nothing: one thread, so a busy 2-core machine does not stall it
        args.vocabs, args.size, args.bptt, args.batch, args.steps, args.repeats = "quick", 16, 5, 2, 2, 1
        args.threads = 1
    unknown = sorted(set(args.vocabs.split(",")) - set(QUICK if args.quick else VOCABS))
    if unknown:
        p.error(f"unknown --vocabs: {', '.join(unknown)}")
    args.vocabs = args.vocabs.split(",")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = json_stdout()
    torch.set_num_threads(args.threads)
    peak, peak_by = peak_flops(256 if args.quick else 2048)
    log(f"peak float32 matmul: {peak / 1e9:.1f} GFLOP/s ({peak_by}) on {args.threads} threads")
    for name in args.vocabs:
        runs = {"full": [], "adaptive": []}
        for r in range(args.repeats):  # alternate who goes first: drift on a shared machine cancels
            for softmax in (("full", "adaptive") if r % 2 == 0 else ("adaptive", "full")):
                log(f"{name} / {softmax} (repeat {r + 1}) ...")
                runs[softmax].append(run_worker(args, name, softmax))
        seconds = {k: statistics.median(s for run in v for s in run["seconds"]) for k, v in runs.items()}
        tokens = args.bptt * args.batch
        line = {"vocab_name": name, "vocab": (QUICK if args.quick else VOCABS)[name][0],
                "cutoffs": list((QUICK if args.quick else VOCABS)[name][1]), "size": args.size, "bptt": args.bptt,
                "batch": args.batch, "full_tokens_per_s": tokens / seconds["full"],
                "adaptive_tokens_per_s": tokens / seconds["adaptive"], "ratio": seconds["full"] / seconds["adaptive"],
                "full_step_mib": max(run["step_mib"] for run in runs["full"]),
                "adaptive_step_mib": max(run["step_mib"] for run in runs["adaptive"]),
                "full_params": runs["full"][0]["params"], "adaptive_params": runs["adaptive"][0]["params"],
                "peak_gflops": peak / 1e9, "peak_by": peak_by, "threads": args.threads, "torch": torch.__version__, "quick": args.quick}
        out.write(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in line.items()}) + "\n")
        log(f"  {name}: full {line['full_tokens_per_s']:.0f} tok/s, {line['full_step_mib']:.0f} MiB/step; "
            f"adaptive {line['adaptive_tokens_per_s']:.0f} tok/s, {line['adaptive_step_mib']:.0f} MiB/step; "
            f"speed-up {line['ratio']:.2f}x")
        if not math.isfinite(line["ratio"]):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
