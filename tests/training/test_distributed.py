"""Data-parallel training on the CPU: 2 gloo ranks, under torchrun and under mp.spawn.

The invariants: DDP's averaged gradient over equal column shards is the full-batch gradient
(every loss term is a mean over the batch); the parameters, and NT-ASGD's averages, stay equal
on every rank although each rank draws its own dropout masks; an evaluation whose totals are
summed across ranks equals the single-process one; only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lm_fixtures import TINY, tiny_config, write_corpus
from rnnreg import penalties
from rnnreg.data import batchify, get_batch, load_dataset, shard_columns
from rnnreg.training.distributed import Distributed
from rnnreg.tasks.lm_evaluation import evaluate
from rnnreg.models import RNNLanguageModel
from rnnreg.optim import NTASGD
from rnnreg.runs.checkpoint import load_checkpoint
from rnnreg.runs.run_dir import RunDir

pytestmark = pytest.mark.slow  # trains models or starts processes

WORLD, VOCAB, BPTT = 2, 11, 6
REGULARIZED = dict(embed_p=0.1, input_p=0.3, hidden_p=0.2, output_p=0.3, weight_p=0.5)


def _model(seed: int = 0, **regularizers) -> RNNLanguageModel:
    torch.manual_seed(seed)
    return RNNLanguageModel(VOCAB, embedding_size=8, hidden_size=10, num_layers=2, tie_weights=True,
                            **regularizers)


def _tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def _loss(out, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus AR and TAR, as the trainer adds them: all means over the batch."""
    ce = F.cross_entropy(out.logits.reshape(-1, VOCAB), y.reshape(-1))  # (T*B, V) vs (T*B,)
    return ce + penalties.ar(out.dropped[-1], 2.0) + penalties.tar(out.raw[-1], 1.0)


def _full_batch_grads() -> list[torch.Tensor]:
    model = _model()
    x, y = get_batch(batchify(_tokens(200, 1), 4), 0, BPTT)  # (T, 4)
    _loss(model(x), y).backward()
    return [p.grad for p in model.parameters()]


def _ddp_grads(d: Distributed) -> list[torch.Tensor]:
    model = _model()
    net = d.wrap(model, torch.device("cpu"))
    x, y = get_batch(shard_columns(batchify(_tokens(200, 1), 4), d.rank, d.world_size), 0, BPTT)  # (T, 2)
    _loss(net(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def _nt_asgd_steps(d: Distributed, steps: int = 6) -> tuple[RNNLanguageModel, NTASGD]:
    """A few truncated-BPTT steps with every dropout on, masks seeded per rank, averaging on
    from the third step."""
    model = _model(seed=d.rank, **REGULARIZED)  # different inits: DDP must copy rank 0's
    net = d.wrap(model, torch.device("cpu"))
    optimizer = NTASGD(model.parameters(), lr=2.0)
    torch.manual_seed(100 + d.rank)
    data = shard_columns(batchify(_tokens(400, 2), 4), d.rank, d.world_size)  # (N, 2)
    hidden = None
    for step in range(steps):
        if step == 2:
            optimizer.start_averaging()
        x, y = get_batch(data, step * BPTT, BPTT)  # (T, 2)
        out = net(x, hidden)
        optimizer.zero_grad()
        _loss(out, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        hidden = model.detach_state(out.state)
    return model, optimizer


def _train_loop(tmp: Path) -> dict:
    """rnnreg.training.loop.train with a finetune stage; the parameters are taken just before
    finish_run, which would load best.pt (written by rank 0) into every rank."""
    import rnnreg.training.loop as training

    seen: dict = {}
    finish = training.finish_run

    def spy(config, run, corpus, model, *args, **kwargs):
        seen["params"] = [p.detach().clone() for p in model.parameters()]
        return finish(config, run, corpus, model, *args, **kwargs)

    training.finish_run = spy
    config = tiny_config(tmp / "corpus", tmp / "runs", "train.epochs=1", "train.finetune_epochs=1",
                         "train.sample_length=0", "train.threads=1")
    summary = training.train(config, RunDir(tmp / "run"))  # leaves the process group
    return {"train_params": seen["params"], "summary": summary}


TASK = ["task.kind=adding", "task.seq_len=10", "task.train_size=64", "task.valid_size=16", "task.test_size=16",
        "model.cell=lstm", "model.hidden_size=8", "model.num_layers=1", "data.batch_size=8",
        "data.eval_batch_size=16", "optim.optimizer=adam", "optim.lr=0.01", "optim.weight_decay=0.0",
        "train.epochs=2", "train.threads=1", "train.log_every=1"]


def _task_config(tmp: Path):
    from rnnreg.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides({"name": "adding-ddp"}, [*TASK, f"train.out_dir={tmp}"]))


def _train_task(tmp: Path) -> dict:
    """A sequence task under torchrun: each rank takes half of every batch."""
    import rnnreg.training.loop as training

    summary = training.train(_task_config(tmp), RunDir(tmp / "task-run"))
    weights = load_checkpoint(tmp / "task-run" / "last.pt")["model"] if Distributed.from_env().is_main else None
    return {"task_summary": summary, "task_weights": weights}


def _worker(rank: int, tmp: str) -> None:
    tmp_path = Path(tmp)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=rank,
                                  world_size=WORLD, timeout=timedelta(seconds=60))
    d = Distributed.from_env()
    result = {"sum": d.sum(rank + 0.5, 2.0 ** 52 + rank), "any_one": d.any(rank == 1),
              "any_none": d.any(False), "gather": d.gather({"rank": rank}), "grads": _ddp_grads(d)}
    model, optimizer = _nt_asgd_steps(d)
    result["params"] = [p.detach().clone() for p in model.parameters()]
    result["averages"] = [optimizer.state[p]["ax"].clone() for p in model.parameters()]
    valid = _tokens(300, 3)
    result["valid"] = {b: evaluate(model, shard_columns(batchify(valid, b), rank, WORLD), BPTT, all_sum=d.sum)
                       for b in (4, 5)}  # 5 columns: unequal shards, 3 and 2
    result.update(_train_loop(tmp_path))
    torch_dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store2'}", rank=rank,
                                  world_size=WORLD, timeout=timedelta(seconds=60))
    result.update(_train_task(tmp_path))
    torch.save(result, tmp_path / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    write_corpus(tmp / "corpus", lines=(150, 30, 30))
    context = mp.spawn(_worker, args=(str(tmp),), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 300                  # a hung collective fails the test, not CI
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not finish within 300 s (a collective hung)")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(autouse=True)
def one_thread():
    """The single-process references on one thread: two OpenMP threads on two busy cores can
    make a tiny LSTM a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_all_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert torch.equal(x, y), f"tensor {i} differs across ranks by {(x - y).abs().max().item()}"


def test_collectives_agree_on_every_rank(ranks):
    for r in ranks:
        assert r["sum"] == [2.0, 2.0 ** 53 + 1]  # float64: a count past 2**53 would round
        assert r["any_one"] is True and r["any_none"] is False
        assert r["gather"] == [{"rank": 0}, {"rank": 1}]


def test_ddp_gradient_is_the_full_batch_gradient(ranks):
    expected = _full_batch_grads()
    for r in ranks:
        for got, want in zip(r["grads"], expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_nt_asgd_with_weight_drop_keeps_ranks_identical(ranks):
    _assert_all_equal(ranks[0]["params"], ranks[1]["params"])
    _assert_all_equal(ranks[0]["averages"], ranks[1]["averages"])
    start = list(_model(seed=0, **REGULARIZED).parameters())
    assert any(not torch.equal(p, q) for p, q in zip(ranks[0]["params"], start)), "training did not move"
    assert any(not torch.equal(p, a) for p, a in zip(ranks[0]["params"], ranks[0]["averages"]))


def test_validation_summed_over_ranks_equals_one_process(ranks):
    model = _model(**REGULARIZED)
    with torch.no_grad():
        for p, trained in zip(model.parameters(), ranks[0]["params"]):
            p.copy_(trained)
    valid = _tokens(300, 3)
    for b in (4, 5):
        single = evaluate(model, batchify(valid, b), BPTT)
        for r in ranks:
            assert r["valid"][b] == pytest.approx(single, rel=1e-6, abs=1e-6)


def test_training_loop_keeps_ranks_identical(ranks):
    _assert_all_equal(ranks[0]["train_params"], ranks[1]["train_params"])
    summaries = [r["summary"] for r in ranks]
    assert all(s["status"] == "finished" and s["finetuned"] for s in summaries)
    assert summaries[0]["valid"] == summaries[1]["valid"]


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_torchrun_trains_and_only_rank_zero_writes(tmp_path, softmax):
    data, out = write_corpus(tmp_path / "corpus", lines=(300, 40, 40)), tmp_path / "runs"
    # An adaptive softmax whose last cluster holds the two rarest words: most steps give it no
    # gradient on a rank, which DDP must expect.
    vocab = len(load_dataset(str(data)).vocab)
    head = ["model.softmax=adaptive", f"model.adaptive_cutoffs=[4, {vocab - 2}]", "model.adaptive_div_value=2.0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--standalone",
           "-m", "rnnreg", "train", "awd-lstm-ptb", f"data.dataset={data}", f"train.out_dir={out}",
           "train.epochs=1", "train.finetune_epochs=1", *TINY, *(head if softmax == "adaptive" else []), "--quiet"]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # only rank 0 prints the summary
    runs = list(out.iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    for name in ("config.toml", "metrics.jsonl", "summary.json", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["finetuned"]
    assert math.isfinite(summary["valid"]) and math.isfinite(summary["test"])
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in entries if e["kind"] == "step"]
    assert steps == list(range(1, summary["steps"] + 1))  # train.log_every=1, one writer


def test_a_sequence_task_trains_under_torchrun_as_in_one_process(ranks, tmp_path):
    """Each rank takes half of every batch of the seeded order, DDP averages the two halves'
    gradients: the same training as one process with the whole batch (up to float rounding)."""
    from rnnreg.training.loop import train

    summaries = [r["task_summary"] for r in ranks]
    assert all(s["status"] == "finished" for s in summaries) and summaries[0]["steps"] == 16
    single = train(_task_config(tmp_path), RunDir(tmp_path / "single"))
    assert single["steps"] == 16
    alone = load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    for key, value in ranks[0]["task_weights"].items():
        torch.testing.assert_close(value, alone[key], rtol=1e-4, atol=1e-5)
