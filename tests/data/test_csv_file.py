"""data=csv: columns, task inference, one-hot encoding, train-only standardization, and a clear
error naming the file, the column and the line for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data import load_data
from dltrain.data.prepare import split_indices
from dltrain.errors import UserError
from dltrain.schema import CSVDataConfig

from data_support import classification_csv, write_csv


def csv_config(path, target="label", **kw) -> CSVDataConfig:
    return CSVDataConfig(name="csv", path=str(path), target=target, **kw)


def load(path, target="label", **kw):
    return load_data(csv_config(path, target, **kw))


def test_text_target_is_classification_with_class_names(tmp_path):
    data = load(classification_csv(tmp_path / "people.csv"))
    info = data.info
    assert (info.kind, info.task, info.num_outputs, info.class_names) == (
        "table", "classification", 2, ("short", "tall"))
    # height, colour one-hot (blue, green, red), weight
    assert info.input_shape == (5,)
    assert sum(len(s) for _, s in data.splits()) == 60
    assert data.train.y.dtype == torch.int64


def test_numeric_columns_are_standardized_on_train_and_one_hot_columns_kept(tmp_path):
    path = classification_csv(tmp_path / "people.csv")
    data = load(path)
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    height = np.array([float(r[0]) for r in rows], dtype=np.float32)
    labels = np.array([r[3] == "tall" for r in rows], dtype=np.int64)
    train, val, test = split_indices(labels, csv_config(path), stratify=True)
    mean, std = height[train].mean(), height[train].std()
    for split, ix in zip((data.train, data.val, data.test), (train, val, test)):
        np.testing.assert_allclose(split.x[:, 0].numpy(), (height[ix] - mean) / std, rtol=1e-4, atol=1e-4)
        colours = split.x[:, 1:4].numpy()
        assert set(np.unique(colours)) == {0.0, 1.0} and np.all(colours.sum(1) == 1)
    expected_blue = np.array([r[1] == "blue" for r in rows], dtype=np.float32)[train]
    np.testing.assert_array_equal(data.train.x[:, 1].numpy(), expected_blue)


def test_float_target_is_regression_standardized_on_train(tmp_path):
    lines = ["a,b,price"] + [f"{i},{i % 7},{i * 1.5 + 0.25}" for i in range(40)]
    data = load(write_csv(tmp_path / "prices.csv", "\n".join(lines)), target="price")
    info = data.info
    assert (info.task, info.num_outputs, info.input_shape) == ("regression", 1, (2,))
    assert len(info.target_mean) == 1 and info.target_std[0] > 1
    assert data.train.y.shape == (len(data.train), 1)
    assert abs(data.train.y.mean().item()) < 1e-5


@pytest.mark.parametrize("values, task", [
    ([0, 1, 2] * 10, "classification"),  # few distinct integers: class labels
    (list(range(30)), "regression"),  # as many values as rows: a count
    ([i % 25 for i in range(100)], "regression"),  # more than 20 distinct integers
    ([0.5, 1.5, 2.5] * 10, "regression"),  # floats
])
def test_task_is_inferred_from_the_target(tmp_path, values, task):
    lines = ["x,y"] + [f"{i},{v}" for i, v in enumerate(values)]
    data = load(write_csv(tmp_path / "t.csv", "\n".join(lines)), target="y")
    assert data.info.task == task


def test_integer_classes_sort_as_numbers(tmp_path):
    lines = ["x,y"] + [f"{i},{[2, 10, 1][i % 3]}" for i in range(30)]
    data = load(write_csv(tmp_path / "t.csv", "\n".join(lines)), target="y")
    assert data.info.class_names == ("1", "2", "10")


def test_data_task_overrides_the_inference(tmp_path):
    lines = ["x,y"] + [f"{i},{i % 3}" for i in range(30)]
    path = write_csv(tmp_path / "t.csv", "\n".join(lines))
    assert load(path, target="y", task="regression").info.task == "regression"
    # floats that a regression would take, forced into 5 classes (12 rows each, so that every
    # split gets some of each class)
    lines = ["x,y"] + [f"{i},{(i % 5) * 0.1:.1f}" for i in range(60)]
    path = write_csv(tmp_path / "f.csv", "\n".join(lines))
    data = load(path, target="y", task="classification")
    assert data.info.task == "classification" and data.info.num_outputs == 5


def test_quoted_fields_blank_lines_and_a_bom_are_read(tmp_path):
    text = '\ufeffname,"size, cm",label\n"Smith, J",12.5,a\n\nDoe,3,b\n' + "".join(
        f"P{i},{i},{'ab'[i % 2]}\n" for i in range(20))
    data = load(write_csv(tmp_path / "q.csv", text))
    assert data.info.num_outputs == 2


# ---------------------------------------------------------------------------------------------
# bad input: one clear line naming the file, the column and the line
def error_of(path, target="label", **kw) -> str:
    with pytest.raises(UserError) as e:
        load(path, target, **kw)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    message = error_of(tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in message and "no such file" in message


def test_empty_file(tmp_path):
    message = error_of(write_csv(tmp_path / "empty.csv", ""))
    assert "empty.csv" in message and "empty" in message


def test_header_without_rows(tmp_path):
    message = error_of(write_csv(tmp_path / "h.csv", "a,label\n"))
    assert "h.csv" in message and "no data rows" in message


def test_missing_column_lists_the_columns(tmp_path):
    message = error_of(classification_csv(tmp_path / "people.csv"), target="lable")
    assert "'lable'" in message and "people.csv" in message
    assert "height, colour, weight, label" in message


@pytest.mark.parametrize("cell", ["", "NA", "nan", "?"])
def test_missing_value_names_line_and_column(tmp_path, cell):
    lines = ["a,b,label", "1,2,x", "3,4,y", f"5,{cell},x", "7,8,y"]
    message = error_of(write_csv(tmp_path / "m.csv", "\n".join(lines)))
    assert "m.csv, line 4, column 'b'" in message and "missing value" in message


def test_missing_target_value(tmp_path):
    lines = ["a,label", "1,x", "2,", "3,y"]
    assert "line 3, column 'label'" in error_of(write_csv(tmp_path / "m.csv", "\n".join(lines)))


def test_stray_text_in_a_numeric_column_names_its_line(tmp_path):
    lines = ["a,b,label"] + [f"{i},{i * 2},{'xy'[i % 2]}" for i in range(10)]
    lines[7] = "6,twelve,x"
    message = error_of(write_csv(tmp_path / "s.csv", "\n".join(lines)))
    assert "s.csv, line 8, column 'b'" in message and "'twelve' is not a number" in message


def test_text_column_with_too_many_values_cannot_be_encoded(tmp_path):
    lines = ["name,a,label"] + [f"person{i},{i},{'xy'[i % 2]}" for i in range(80)]
    message = error_of(write_csv(tmp_path / "n.csv", "\n".join(lines)))
    assert "n.csv, line 2, column 'name'" in message and "80 distinct" in message
    assert "one-hot" in message


def test_row_with_the_wrong_number_of_fields(tmp_path):
    lines = ["a,b,label", "1,2,x", "3,4,5,y", "5,6,x"]
    message = error_of(write_csv(tmp_path / "r.csv", "\n".join(lines)))
    assert "r.csv, line 3" in message and "4 fields" in message


def test_text_target_for_a_regression(tmp_path):
    lines = ["a,label"] + [f"{i},{'xy'[i % 2]}" for i in range(10)]
    message = error_of(write_csv(tmp_path / "t.csv", "\n".join(lines)), task="regression")
    assert "line 2, column 'label'" in message and "not a number" in message


def test_a_single_class_is_refused(tmp_path):
    lines = ["a,label"] + [f"{i},same" for i in range(10)]
    assert "at least two" in error_of(write_csv(tmp_path / "t.csv", "\n".join(lines)))


def test_no_feature_columns(tmp_path):
    lines = ["label"] + ["xy"[i % 2] for i in range(10)]
    assert "no feature columns" in error_of(write_csv(tmp_path / "t.csv", "\n".join(lines)))


def test_a_folder_or_binary_file(tmp_path):
    assert "is a folder" in error_of(tmp_path)
    (tmp_path / "b.csv").write_bytes(b"a,label\n\xff\xfe,\x80\n")
    assert "not UTF-8" in error_of(tmp_path / "b.csv")
