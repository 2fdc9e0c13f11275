"""Load time and peak memory of rnnreg's corpus loader on synthetic corpora of the real sizes.

Two corpora are generated in a temporary folder: a WikiText-103-like one (three files of
``line.split() + <eos>`` text, a Zipf(1) distribution over 267,735 word types, 103,227,021 /
217,646 / 245,569 tokens with <eos> and about 540 MB of training text) and an enwik8-like one
(10^8 bytes over 205 symbols, cut 90M/5M/5M). ``--scale`` shrinks the token and byte counts (not
the number of types). Each load runs in a fresh subprocess, so its peak resident memory
(``ru_maxrss`` of that child, from ``os.wait4``) is its own; a child that only imports torch and
rnnreg.data gives the baseline to subtract. Loads, in this order:

- ``first``:  streamed tokenization, ids written to the id cache and then memory-mapped;
- ``second``: the same call again: the cached ids are mapped, nothing is tokenized;
- ``memory``: streamed tokenization into memory (no cache folder: a user's own corpus folder);
- ``old`` (with ``--old``): the loader before streaming: ``read_text`` of every file, then
  ``build_corpus`` (and ``split_text`` for enwik8), which both still exist.

The parent process imports no torch and generates nothing itself: Linux carries a parent's
resident size over into its children's ``ru_maxrss`` (across fork and exec), so a heavy parent
would set a floor under every measurement.

stdout carries one JSON line per load and nothing else; progress and a table go to stderr.

    python benchmarks/bench_corpus_load.py                     # real sizes (minutes)
    python benchmarks/bench_corpus_load.py --scale 0.1 --old   # a tenth, with the old loader
    python benchmarks/bench_corpus_load.py --corpora enwik8 --keep /tmp/corpora
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from operator import itemgetter
from pathlib import Path

WT103 = {"train": 103_227_021, "valid": 217_646, "test": 245_569}  # tokens with <eos> (Merity et al.)
WT103_TYPES = 267_735
WT103_LINES = 1_801_350  # training lines, half of them blank as in the real file
WORD_CHARS = 4.2  # mean characters per word: with its space, ~540 MB for the training file
ENWIK8_BYTES, ENWIK8_HELDOUT, ENWIK8_SYMBOLS = 100_000_000, 5_000_000, 205
CORPORA = ("wt103", "enwik8")
BLOCK = 4_000_000  # tokens or bytes generated at a time


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spelled(rank: int) -> str:
    """A distinct word for each rank: letters of the rank in base 26 (short for frequent words)."""
    letters = ""
    rank += 1
    while rank:
        rank, digit = divmod(rank - 1, 26)
        letters = chr(97 + digit) + letters
    return letters


def vocabulary(types: int, probs) -> list[bytes]:
    """Words padded with ``0`` (never a letter, so they stay distinct) to WORD_CHARS on average."""
    import torch

    words = [spelled(r) for r in range(types)]
    mean = float((torch.tensor([len(w) for w in words], dtype=torch.float64) * probs).sum())
    pad = max(WORD_CHARS - mean, 0.0)
    return [(w + "0" * (int(pad) + (r % 10 < 10 * (pad % 1)))).encode() for r, w in enumerate(words)]


def write_words(path: Path, tokens: int, lines: int, words: list[bytes], cdf, gen) -> None:
    """``tokens`` tokens (<eos> included) on ``lines`` lines, every other one blank, as WikiText."""
    import torch

    text_lines = max(lines // 2, 1)
    n_words = tokens - 2 * text_lines
    per_line = n_words / text_lines
    with path.open("wb") as out:
        done_words, done_lines = 0, 0
        while done_lines < text_lines:
            count = min(BLOCK, n_words - done_words)
            lines_here = text_lines - done_lines if count == n_words - done_words else int(count / per_line)
            ids = torch.searchsorted(cdf, torch.rand(count, generator=gen, dtype=torch.float64)).tolist()
            picked = itemgetter(*ids)(words) if count > 1 else (words[ids[0]],)
            cuts = [round(i * count / lines_here) for i in range(lines_here + 1)]
            out.write(b"".join(b" " + b" ".join(picked[a:b]) + b" \n \n" for a, b in zip(cuts, cuts[1:])))
            done_words, done_lines = done_words + count, done_lines + lines_here


def make_wt103(folder: Path, scale: float, seed: int) -> list[Path]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    probs = 1.0 / torch.arange(1, WT103_TYPES + 1, dtype=torch.float64)
    probs /= probs.sum()
    cdf = probs.cumsum(0)
    cdf[-1] = 1.0
    words = vocabulary(WT103_TYPES, probs)
    paths = []
    for split, tokens in WT103.items():
        lines = int(WT103_LINES * scale) if split == "train" else max(int(tokens * scale) // 60, 2)
        path = folder / f"wiki.{split}.tokens"
        write_words(path, max(int(tokens * scale), 4 * lines), lines, words, cdf, gen)
        paths.append(path)
    return paths


def make_enwik8(folder: Path, scale: float, seed: int) -> Path:
    import torch

    gen = torch.Generator().manual_seed(seed)
    weights = torch.zeros(256, dtype=torch.float64)
    weights[32:127] = 1.0 / torch.arange(1, 96, dtype=torch.float64)  # printable ASCII, skewed
    weights[10] = 0.02
    weights[128:128 + ENWIK8_SYMBOLS - 96] = 1e-4  # rare UTF-8 continuation and lead bytes
    path, total = folder / "enwik8", int(ENWIK8_BYTES * scale)
    buffer = bytearray(BLOCK)
    with path.open("wb") as out:
        for start in range(0, total, BLOCK):
            n = min(BLOCK, total - start)
            codes = torch.multinomial(weights, n, replacement=True, generator=gen).to(torch.uint8)
            torch.frombuffer(buffer, dtype=torch.uint8)[:n].copy_(codes)
            out.write(memoryview(buffer)[:n])
    return path


# --- one load, in a child process ---------------------------------------------------------------

def child(mode: str, corpus: str, folder: Path, scale: float, seed: int) -> dict:
    import torch

    from rnnreg.data import build_corpus, id_cache
    from rnnreg.data.file_corpus import load_corpus, load_single_file, split_text
    from rnnreg.data.textfile import read_text

    id_cache.MIN_BYTES = 0  # a scaled-down corpus may be under the threshold: cache it anyway
    ids = folder / "ids"
    start = time.perf_counter()
    if mode == "baseline":
        return {"wall_s": 0.0, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if mode == "generate":
        (make_wt103 if corpus == "wt103" else make_enwik8)(folder, scale, seed)
        return {"wall_s": time.perf_counter() - start}
    if corpus == "wt103":
        paths = [folder / f"wiki.{s}.tokens" for s in WT103]
        if mode == "old":
            loaded = build_corpus(*(read_text(p) for p in paths), level="word", name="wt103",
                                  sources=tuple(map(str, paths)))
        else:
            loaded = load_corpus(*paths, level="word", name="wt103",
                                 cache_folder=None if mode == "memory" else ids)
    else:
        heldout = max(int(ENWIK8_HELDOUT * scale), 1)
        path = folder / "enwik8"
        if mode == "old":
            loaded = split_text(read_text(path, encoding="latin-1"), str(path), level="char",
                                name="enwik8", heldout=heldout)
        else:
            loaded = load_single_file(path, level="char", name="enwik8", encoding="latin-1",
                                      heldout=heldout, cache_folder=None if mode == "memory" else ids)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": [loaded.train.numel(), loaded.valid.numel(), loaded.test.numel()],
            "vocab": len(loaded.vocab)}


def run_child(mode: str, corpus: str, folder: Path, args) -> dict:
    """Run one load in a fresh interpreter; its JSON result plus its own peak RSS."""
    cmd = [sys.executable, __file__, "--child", mode, corpus, str(folder), "--scale", str(args.scale),
           "--seed", str(args.seed)]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage alone
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{mode} load of {corpus} failed (exit {proc.returncode})")
        out.seek(0)
        result = json.loads(out.read())
    scale_rss = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return {**result, "max_rss_mib": usage.ru_maxrss * scale_rss / 2**20}


def machine(torch_version: str) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
            f"python {platform.python_version()}, torch {torch_version}, 1-min load {load:.2f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (default 1)")
    p.add_argument("--corpora", default=",".join(CORPORA), help=f"subset of {','.join(CORPORA)}")
    p.add_argument("--old", action="store_true", help="also measure the old whole-text loader")
    p.add_argument("--keep", type=Path, help="generate into (or reuse) this folder and keep it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", nargs=3, metavar=("MODE", "CORPUS", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.corpora = [c for c in args.corpora.split(",") if c]
    if not 0 < args.scale <= 1 or set(args.corpora) - set(CORPORA):
        p.error(f"--scale must be in (0, 1] and --corpora a subset of {','.join(CORPORA)}")
    return args


def measure(corpus: str, folder: Path, args, out) -> list[dict]:
    shutil.rmtree(folder / "ids", ignore_errors=True)
    rows = []
    for mode in ("first", "second", "memory") + (("old",) if args.old else ()):
        log(f"{corpus} / {mode} ...")
        row = {"corpus": corpus, "mode": mode, "scale": args.scale,
               **run_child(mode, corpus, folder, args)}
        if mode == "second":
            row["cache_mib"] = sum(p.stat().st_size for p in (folder / "ids").iterdir()) / 2**20
        out.write(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}) + "\n")
        rows.append(row)
    return rows


def prepare(corpus: str, root: Path, args) -> Path:
    """The corpus's folder under ``root``, generated unless it is there already (``--keep``)."""
    folder = root / corpus
    folder.mkdir(parents=True, exist_ok=True)
    made = ""
    if not any(folder.iterdir()):
        made = f" (generated in {run_child('generate', corpus, folder, args)['wall_s']:.0f} s)"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    log(f"{corpus}: " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in files) + made)
    return folder


def table(rows: list[dict], baseline: float) -> None:
    log(f"\n| corpus | load | wall s | peak RSS MiB | minus baseline ({baseline:.0f}) | "
        f"tokens (train/valid/test) | vocab |")
    log("|---|---|---|---|---|---|---|")
    for r in rows:
        tokens = "/".join(f"{n:,}" for n in r["tokens"])
        log(f"| {r['corpus']} | {r['mode']} | {r['wall_s']:.1f} | {r['max_rss_mib']:.0f} | "
            f"{r['max_rss_mib'] - baseline:.0f} | {tokens} | {r['vocab']:,} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        mode, corpus, folder = args.child
        print(json.dumps(child(mode, corpus, Path(folder), args.scale, args.seed)))
        return 0
    out = sys.stdout
    sys.stdout = sys.stderr  # only the JSON lines go to stdout
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_corpus_load."))
    try:
        base = run_child("baseline", "none", root, args)
        log(f"machine: {machine(base['torch'])}, torch threads {base['threads']}")
        log(f"baseline (python + torch + rnnreg.data imported): {base['max_rss_mib']:.0f} MiB")
        rows = []
        for corpus in args.corpora:
            rows += measure(corpus, prepare(corpus, root, args), args, out)
        table(rows, base["max_rss_mib"])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
