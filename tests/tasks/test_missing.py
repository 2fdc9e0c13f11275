"""The missing-values task: the synthetic generator, batching, the two model paths, the metric,
CSV splits, and a tiny training run."""

from __future__ import annotations

import pytest
import torch

from rnnreg.data.errors import DataError
from rnnreg.models.grud_net import GRUDNet
from rnnreg.models.sequence_net import SequenceNet
from rnnreg.models.outputs import SequenceOutput
from rnnreg.tasks.missing import MissingValuesTask, binary_auc
from rnnreg.tasks.synthetic_missing import make_missing_benchmark


pytestmark = pytest.mark.usefixtures("one_thread")


def small_task(**kw):
    options = {"seq_len": 12, "num_features": 4, "missing_p": 0.5, "train_size": 64, "valid_size": 40,
               "test_size": 24, "data_seed": 7}
    return MissingValuesTask.synthetic(**{**options, **kw})


def test_generator_is_seeded_and_shaped():
    make = lambda seed: make_missing_benchmark(50, seq_len=10, num_features=3,
                                               generator=torch.Generator().manual_seed(seed))
    a, b, c = make(1), make(1), make(2)
    assert a.values.shape == (10, 50, 3) and a.times.shape == (10, 50) and (a.lengths == 10).all()
    assert torch.equal(a.values.nan_to_num(99), b.values.nan_to_num(99)) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.values.nan_to_num(99), c.values.nan_to_num(99))
    assert (torch.diff(a.times, dim=0) > 0).all() and set(a.labels.tolist()) == {0, 1}


def test_generator_puts_the_class_in_the_observation_rate_of_the_informative_variables():
    data = make_missing_benchmark(4000, seq_len=20, num_features=4, missing_p=0.6, rate_effect=0.3,
                                  value_effect=0.0, generator=torch.Generator().manual_seed(0))
    observed = (~torch.isnan(data.values)).float().mean(0)  # (N, D) observed fraction per series
    ones, zeros = observed[data.labels == 1].mean(0), observed[data.labels == 0].mean(0)
    torch.testing.assert_close(observed.mean(), torch.tensor(0.4), atol=0.01, rtol=0)  # 1 - missing_p
    assert ((ones - zeros)[:2] > 0.2).all()  # informative (first half): 0.4 * (1.3 vs 0.7)
    assert ((ones - zeros)[2:].abs() < 0.02).all()  # the rest carry no class


def test_batches_are_pure_cover_the_data_and_hold_no_nan():
    task = small_task()
    assert task.num_train_batches(10) == 7
    first = task.train_batch(1, 2, 10)
    assert all(torch.equal(first[k], task.train_batch(1, 2, 10)[k]) for k in first)
    assert first["x"].shape == (12, 10, 4) and first["label"].shape == (10,)
    assert all(torch.isfinite(v).all() for v in first.values())
    labels = torch.cat([task.train_batch(3, i, 10)["label"] for i in range(7)])
    assert len(labels) == 64 and labels.sum() == task._data["train"]["label"].sum()
    assert not torch.equal(task.train_batch(1, 0, 64)["label"], task.train_batch(2, 0, 64)["label"])
    assert sum(len(b["label"]) for b in task.eval_batches("valid", 16)) == 40
    with pytest.raises(ValueError, match="index"):
        task.train_batch(1, 7, 10)


def test_inputs_are_standardized_on_the_observed_training_values():
    task = small_task(train_size=400)
    data = task._data["train"]
    observed = data["x"][data["mask"] > 0]
    torch.testing.assert_close(observed.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(task.x_mean, torch.zeros(4), atol=1e-5, rtol=0)


class Spy(torch.nn.Module):
    """Records the input a SequenceNet-style model receives."""

    def forward(self, x, lengths=None):
        self.seen = x
        return SequenceOutput(torch.zeros(x.shape[1], 2), [x], [x])


def test_the_baseline_reads_mean_imputed_values_and_grud_reads_everything():
    task = small_task(inputs="imputed")
    batch = task.train_batch(1, 0, 8)
    spy = Spy()
    task.forward(spy, batch)
    observed = batch["mask"] > 0
    assert torch.equal(spy.seen[observed], batch["x"][observed])
    assert torch.equal(spy.seen[~observed], task.x_mean.expand_as(batch["x"])[~observed])
    grud = GRUDNet(4, 2, x_mean=task.x_mean, hidden_size=6)
    out = small_task().forward(grud, batch)
    assert out.prediction.shape == (8, 2) and out.raw[0].shape == (12, 8, 6)
    assert SequenceNet(4, 2, cell="gru", hidden_size=6)(spy.seen).prediction.shape == (8, 2)


def test_auc_on_hand_worked_cases():
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert binary_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert binary_auc(torch.tensor([0.2, 0.9]), torch.tensor([0, 1])) == 1.0
    assert binary_auc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0, 1, 1])) == 0.5  # ties: half
    # one tie (0.3 vs 0.3) and one win (0.3 > 0.1) out of 2 pairs: (1 + 0.5) / 2
    assert binary_auc(torch.tensor([0.1, 0.3, 0.3]), torch.tensor([0, 0, 1])) == 0.75
    assert binary_auc(torch.tensor([0.1, 0.3]), torch.tensor([1, 1])) != binary_auc(torch.tensor([0.0]), torch.tensor([1]))


class Constant(torch.nn.Module):
    def forward(self, x, lengths=None):
        return SequenceOutput(torch.tensor([0.0, 1.0]).expand(x.shape[1], 2), [x], [x])


def test_score_of_a_constant_model_is_the_class_share_and_chance_auc():
    task = small_task(inputs="imputed")
    scores = task.score(Constant(), task.eval_batches("valid", 16))
    share = task._data["valid"]["label"].float().mean().item()
    assert scores["accuracy"] == pytest.approx(100 * share) and scores["auc"] == 0.5
    assert scores["loss"] == pytest.approx(torch.nn.functional.softplus(torch.tensor(-1.0)).item() * share
                                           + torch.nn.functional.softplus(torch.tensor(1.0)).item() * (1 - share))


def test_csv_file_is_split_by_seed_and_folder_is_read_as_is(tmp_path):
    rows = ["id,time,a,b,label"]
    for n in range(30):
        rows += [f"s{n},0,{n},,{n % 2}", f"s{n},1.5,,{-n},{n % 2}"]
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    task = MissingValuesTask.from_config_values(path=str(tmp_path / "all.csv"), seq_len=1, num_features=1,
                                                missing_p=0.1, train_size=0, valid_size=6, test_size=4, data_seed=3)
    assert (task.size("train"), task.size("valid"), task.size("test"), task.input_size) == (20, 6, 4, 2)
    again = MissingValuesTask.from_csv(tmp_path / "all.csv", valid_size=6, test_size=4, train_size=5, data_seed=3)
    assert again.size("train") == 5 and torch.equal(again._data["valid"]["mask"], task._data["valid"]["mask"])
    with pytest.raises(DataError, match="task.valid_size"):
        MissingValuesTask.from_csv(tmp_path / "all.csv", valid_size=20, test_size=10)
    folder = tmp_path / "splits"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.csv").write_text("\n".join(rows[:9]) + "\n")
    assert MissingValuesTask.from_csv(folder, valid_size=1, test_size=1).size("test") == 4


def test_labels_must_be_binary(tmp_path):
    data = make_missing_benchmark(10, seq_len=3, num_features=2, generator=torch.Generator().manual_seed(0))
    bad = type(data)(data.values, data.times, data.lengths, data.labels + 1, data.ids, data.feature_names)
    with pytest.raises(DataError, match="labelled 0 or 1"):
        MissingValuesTask({"train": data, "valid": bad, "test": data})


def test_a_tiny_grud_learns():
    task = small_task(train_size=128, missing_p=0.4)
    torch.manual_seed(0)
    model = GRUDNet(4, 2, x_mean=task.x_mean, hidden_size=16, recurrent_dropout=0.1, zoneout_h_p=0.05,
                    output_p=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.eval()
    before = task.score(model, task.eval_batches("valid", 40))["loss"]
    model.train()
    for step in range(40):
        batch = task.train_batch(1 + step // 4, step % 4, 32)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = task.score(model, [task.train_batch(1, 0, 128)])["loss"]
    assert after < before - 0.05, (before, after)
