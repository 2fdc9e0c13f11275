"""The long-format CSV loader: what it reads, how it pads, and the errors it gives (with lines)."""

from __future__ import annotations

import math

import pytest
import torch

from rnnreg.data.errors import DataError
from rnnreg.data.irregular_csv import read_irregular_csv, read_irregular_folder, read_labels

GOOD = """id,time,hr,temp,label
p1,0.0,80,,1
p2,0.0,,36.5,0
p1,0.5,NaN,37.0,
p1,2.0,90,38.0,1
"""


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_pads_and_keeps_first_appearance_order(tmp_path):
    data = read_irregular_csv(write(tmp_path, GOOD))
    assert data.ids == ("p1", "p2") and data.feature_names == ("hr", "temp")
    assert data.lengths.tolist() == [3, 1] and data.labels.tolist() == [1, 0]
    assert data.values.shape == (3, 2, 2)  # (T, N, D)
    p1 = data.values[:, 0]
    assert p1[0, 0] == 80 and math.isnan(p1[0, 1]) and math.isnan(p1[1, 0]) and p1[2].tolist() == [90, 38]
    assert data.times[:, 0].tolist() == [0.0, 0.5, 2.0]
    assert data.times[:, 1].tolist() == [0.0, 0.0, 0.0]  # padding repeats the last time
    assert torch.isnan(data.values[1:, 1]).all() and data.values[0, 1, 1] == 36.5


def test_labels_from_a_separate_file(tmp_path):
    text = "id,time,hr\na,1,3\nb,1,4\na,2,5\n"
    write(tmp_path, "id,label\nb,1\na,0\nc,1\n", "labels.csv")
    data = read_irregular_csv(write(tmp_path, text), labels_path=tmp_path / "labels.csv")
    assert data.ids == ("a", "b") and data.labels.tolist() == [0, 1]


@pytest.mark.parametrize("text, line, message", [
    ("id,time,hr,label\na,0,x,1\n", 2, "'x' is not a number"),
    ("id,time,hr,label\na,0,1,1\na,0,2,1\n", 3, "not after its previous time"),
    ("id,time,hr,label\na,0,1,1\na,1,2,0\n", 3, "differs from its earlier 1"),
    ("id,time,hr,label\na,0,1\n", 2, "3 cells, the header has 4"),
    ("id,time,hr,label\na,,1,1\n", 2, "time: '' is not a number"),
    ("id,time,hr,label\na,0,inf,1\n", 2, "must be finite"),
    ("id,time,hr,label\na,0,1,yes\n", 2, "label 'yes' is not an integer"),
    ("time,id,hr,label\n", 1, "must start with 'id,time'"),
    ("id,time,label,hr\n", 1, "must come last"),
    ("id,time,hr,hr\n", 1, "duplicate column"),
])
def test_errors_name_the_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=f"data.csv:{line}:") as error:
        read_irregular_csv(path)
    assert message in str(error.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_irregular_csv(write(tmp_path, ""))
    with pytest.raises(DataError, match="no data rows"):
        read_irregular_csv(write(tmp_path, "id,time,hr,label\n"))
    with pytest.raises(DataError, match="no 'label' column and no labels file"):
        read_irregular_csv(write(tmp_path, "id,time,hr\na,0,1\n"))
    with pytest.raises(DataError, match="no label for 1 series"):
        read_irregular_csv(write(tmp_path, "id,time,hr,label\na,0,1,\n"))
    labels = write(tmp_path, "id,label\na,1\n", "labels.csv")
    with pytest.raises(DataError, match="use one"):
        read_irregular_csv(write(tmp_path, GOOD), labels_path=labels)
    with pytest.raises(DataError, match="cannot read"):
        read_irregular_csv(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="labels.csv:3: id 'a' appears twice"):
        read_labels(write(tmp_path, "id,label\na,1\na,0\n", "labels.csv"))


def test_folder_of_splits(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path, GOOD, f"{split}.csv")
    splits = read_irregular_folder(tmp_path)
    assert set(splits) == {"train", "valid", "test"} and len(splits["test"]) == 2
    write(tmp_path, GOOD.replace("temp", "spo2"), "valid.csv")
    with pytest.raises(DataError, match="valid.csv: feature columns differ"):
        read_irregular_folder(tmp_path)
    (tmp_path / "test.csv").unlink()
    with pytest.raises(DataError, match="missing test.csv"):
        read_irregular_folder(tmp_path)
