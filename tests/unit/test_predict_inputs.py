"""``dltrain.predict.inputs.read_batches``: new inputs read the way training read its data, in
batches, with one-line errors that name the file, line and column. The runs are DataInfo
records written here; nothing trains."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from dltrain.data.base import DataInfo
from dltrain.errors import UserError
from dltrain.predict.inputs import read_batches

COLUMNS = [{"name": "height", "categories": None},
           {"name": "colour", "categories": ["blue", "green", "red"]},
           {"name": "weight", "categories": None}]
# a run trained on a CSV: height, one-hot colour (3), weight
TABLE = DataInfo(name="csv", kind="table", input_shape=(5,), task="classification",
                 num_outputs=2, class_names=("short", "tall"),
                 preprocess={"version": 1, "table": {"columns": COLUMNS, "target": "label"},
                             "scale": {"mean": [170.0, 0, 0, 0, 70.0], "std": [10.0, 1, 1, 1, 5.0]}})
TABLE_REGRESSION = DataInfo(name="csv", kind="table", input_shape=(5,), task="regression",
                            num_outputs=1, target_mean=(3.0,), target_std=(2.0,),
                            preprocess={"version": 1,
                                        "table": {"columns": COLUMNS, "target": "price"}})
IMAGES = DataInfo(name="image_folder", kind="image", input_shape=(3, 6, 6),
                  task="classification", num_outputs=2, class_names=("cat", "dog"),
                  preprocess={"version": 1, "image": {"size": 6, "channels": 3, "resize": "fit"},
                              "scale": {"mean": [[[127.5]]] * 3, "std": [[[60.0]]] * 3}})
GREY = DataInfo(name="mnist", kind="image", input_shape=(1, 4, 4), task="classification",
                num_outputs=10, class_names=tuple(f"{i} - x" for i in range(10)),
                preprocess={"version": 1, "image": {"size": 4, "channels": 1, "resize": "fit"}})
SEQUENCE = DataInfo(name="sine", kind="sequence", input_shape=(4, 2), task="regression",
                    num_outputs=3, preprocess={"version": 1})
NPZ_CLASSES = DataInfo(name="npz", kind="table", input_shape=(3,), task="classification",
                       num_outputs=3, class_names=("3", "5", "7"), preprocess={"version": 1})
DIGITS = DataInfo(name="digits", kind="image", input_shape=(1, 8, 8), task="classification",
                  num_outputs=10, class_names=tuple(map(str, range(10))),
                  preprocess={"version": 1, "scale": {"mean": [[[4.9]]], "std": [[[6.0]]]}})

PEOPLE = """height,colour,weight,label
171.5,red,69.25,tall
160,green,55,short
182,blue,80,tall
"""
# the rows above as the model reads them: height, blue, green, red, weight
PEOPLE_X = np.array([[171.5, 0, 0, 1, 69.25], [160, 0, 1, 0, 55], [182, 1, 0, 0, 80]],
                    dtype=np.float32)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def all_of(source, info=TABLE, batch_size=1024):
    batches = list(read_batches(source, info, batch_size))
    x = np.concatenate([b.x for b in batches])
    ids = [i for b in batches for i in b.ids]
    ys = [b.y for b in batches]
    y = None if ys[0] is None else np.concatenate(ys)
    return x, ids, y, batches


def error(source, info=TABLE, batch_size=1024) -> str:
    with pytest.raises(UserError) as e:
        list(read_batches(source, info, batch_size))
    message = str(e.value)
    assert "\n" not in message, "one line"
    return message


# ---------------------------------------------------------------------------------------------
# CSV
def test_csv_rows_become_the_training_features(tmp_path):
    x, ids, y, batches = all_of(write(tmp_path / "p.csv", PEOPLE))
    np.testing.assert_array_equal(x, PEOPLE_X)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert ids == ["1", "2", "3"] and batches[0].id_name == "row"
    assert y.tolist() == [1, 0, 1]  # tall, short, tall


def test_csv_columns_in_any_order_extra_ignored_target_optional(tmp_path):
    text = ("note,weight,colour,height\n"
            "anything,69.25,red,171.5\n"
            ",55,green,160\n"  # a missing value in a column the model does not read is no error
            "x,80,blue,182\n")
    x, ids, y, _ = all_of(write(tmp_path / "p.csv", text))
    np.testing.assert_array_equal(x, PEOPLE_X)
    assert y is None and ids == ["1", "2", "3"]


def test_csv_ids_count_data_rows_not_lines(tmp_path):
    """Blank lines and a quoted cell over two lines do not shift the row numbers."""
    text = 'height,colour,weight,note\n\n171.5,red,69.25,"two\nlines"\n\n160,green,55,x\n'
    _, ids, _, _ = all_of(write(tmp_path / "p.csv", text))
    assert ids == ["1", "2"]


def test_csv_streams_in_batches(tmp_path):
    rows = [f"{150 + i},{'red' if i % 2 else 'blue'},{50 + i},{'tall' if i % 3 else 'short'}"
            for i in range(7)]
    path = write(tmp_path / "p.csv", "height,colour,weight,label\n" + "\n".join(rows) + "\n")
    batches = list(read_batches(path, TABLE, 3))
    assert [len(b.x) for b in batches] == [3, 3, 1]
    assert [b.ids for b in batches] == [["1", "2", "3"], ["4", "5", "6"], ["7"]]
    assert np.concatenate([b.x[:, 0] for b in batches]).tolist() == list(range(150, 157))
    assert np.concatenate([b.y for b in batches]).tolist() == [0, 1, 1, 0, 1, 1, 0]


def test_csv_is_read_row_by_row(tmp_path):
    """The first batches come out before a bad row further down is read: the file is streamed,
    not loaded whole."""
    rows = ["150,red,50"] * 4 + ["oops,red,50"]
    path = write(tmp_path / "p.csv", "height,colour,weight\n" + "\n".join(rows) + "\n")
    batches = read_batches(path, TABLE, 2)
    assert next(batches).ids == ["1", "2"]
    assert next(batches).ids == ["3", "4"]
    with pytest.raises(UserError, match="line 6"):
        next(batches)


def test_csv_regression_target_in_its_own_units(tmp_path):
    text = "height,colour,weight,price\n170,red,70,12.5\n150,blue,50,-3\n"
    _, _, y, _ = all_of(write(tmp_path / "r.csv", text), TABLE_REGRESSION)
    assert y.dtype == np.float32 and y.tolist() == [[12.5], [-3.0]]


def test_csv_on_standard_input(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(PEOPLE.encode()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    x, ids, y, _ = all_of("-")
    np.testing.assert_array_equal(x, PEOPLE_X)
    assert y.tolist() == [1, 0, 1]
    assert not stdin.buffer.closed, "reading must not close standard input"


def test_missing_feature_columns_are_listed(tmp_path):
    path = write(tmp_path / "p.csv", "weight,note\n70,x\n")
    assert error(path) == (f"{path}, line 1: no columns 'height', 'colour' in the header; this "
                           "run's model reads the columns height, colour, weight")
    path = write(tmp_path / "q.csv", "\nweight,height\n70,170\n")
    assert error(path) == (f"{path}, line 2: no column 'colour' in the header; this run's model "
                           "reads the columns height, colour, weight")


def test_a_category_not_seen_in_training_is_refused(tmp_path):
    path = write(tmp_path / "p.csv", "height,colour,weight\n170,red,70\n171,purple,70\n")
    assert error(path) == (f"{path}, line 3, column 'colour': 'purple' was not seen in "
                           "training; known: blue, green, red")
    # no guessing from case or spaces either
    path = write(tmp_path / "q.csv", "height,colour,weight\n170,Red,70\n")
    assert "'Red' was not seen in training" in error(path)


def test_a_class_not_seen_in_training_is_refused(tmp_path):
    path = write(tmp_path / "p.csv", "height,colour,weight,label\n170,red,70,medium\n")
    assert error(path) == (f"{path}, line 2, column 'label': class 'medium' was not seen in "
                           "training; known: short, tall")


def test_a_word_in_a_numeric_column_is_refused(tmp_path):
    path = write(tmp_path / "p.csv", "height,colour,weight\n170,red,70\n170,red,heavy\n")
    assert error(path) == (f"{path}, line 3, column 'weight': 'heavy' is not a number (the "
                           "column held numbers in training)")
    path = write(tmp_path / "r.csv", "height,colour,weight,price\n170,red,70,cheap\n")
    assert error(path, TABLE_REGRESSION) == (f"{path}, line 2, column 'price': 'cheap' is not a "
                                             "number (the target is numeric)")


@pytest.mark.parametrize("cell, shown", [("", "an empty cell"), ("NA", "'NA'"), ("?", "'?'"),
                                         ("nan", "'nan'"), ("None", "'None'")])
def test_a_missing_value_is_refused(tmp_path, cell, shown):
    path = write(tmp_path / "p.csv", f"height,colour,weight\n170,red,70\n170,{cell},70\n")
    assert error(path) == (f"{path}, line 3, column 'colour': missing value ({shown}); dltrain "
                           "does not fill in missing values: fill it in or drop the row")


def test_a_missing_target_is_refused(tmp_path):
    path = write(tmp_path / "p.csv", "height,colour,weight,label\n170,red,70,\n")
    assert error(path) == (f"{path}, line 2, column 'label': missing value (an empty cell); "
                           "dltrain does not fill in missing values: fill it in, drop the row, or "
                           "drop the target column to predict without metrics")


def test_malformed_csv_files(tmp_path):
    path = write(tmp_path / "p.csv", "height,colour,weight\n170,red\n")
    assert error(path) == f"{path}, line 2: 2 fields, but the header line names 3 columns"
    path = write(tmp_path / "e.csv", "")
    assert error(path) == f"{path} is empty: a CSV file needs a header line and data rows"
    path = write(tmp_path / "h.csv", "height,colour,weight\n")
    assert error(path) == f"{path} has a header line but no data rows"
    path = write(tmp_path / "d.csv", "height,colour,height,weight\n1,red,2,3\n")
    assert error(path) == f"{path}: the header names column 'height' twice"
    path = tmp_path / "b.csv"
    path.write_bytes(b"height,colour,weight\n\xff\xfe,red,1\n")
    assert error(path).startswith(f"{path}: not UTF-8 text")


def test_a_csv_for_a_run_that_was_not_trained_on_one(tmp_path):
    path = write(tmp_path / "p.csv", PEOPLE)
    diabetes = DataInfo(name="diabetes", kind="table", input_shape=(10,), task="regression",
                        num_outputs=1, preprocess={"version": 1})
    assert error(path, diabetes) == (
        f"{path} is read as a CSV file (it is not .npz, .npy or an image), but this run's model "
        "was not trained on a CSV file (data=diabetes), so it has no columns to read; it takes "
        "an .npz (x) or .npy file of raw inputs of shape (N, 10)")
    assert error("-", IMAGES).startswith("- means a CSV on standard input, but this run's model "
                                         "was not trained on a CSV file (data=image_folder)")


def test_no_such_file(tmp_path):
    assert error(tmp_path / "nothing.csv") == f"{tmp_path / 'nothing.csv'}: no such file or folder"


# ---------------------------------------------------------------------------------------------
# arrays
def test_npy_is_streamed_from_a_memory_map(tmp_path):
    x = np.arange(7 * 3, dtype=np.float64).reshape(7, 3)
    np.save(tmp_path / "x.npy", x)
    batches = list(read_batches(tmp_path / "x.npy", NPZ_CLASSES, 3))
    assert [b.ids for b in batches] == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert batches[0].id_name == "index" and batches[0].y is None
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches]), x)
    assert all(b.x.dtype == np.float32 and b.x.flags.writeable for b in batches)


def test_one_input_without_the_batch_axis(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((4, 2)))
    x, ids, _, _ = all_of(tmp_path / "one.npy", SEQUENCE)
    assert x.shape == (1, 4, 2) and ids == ["0"]
    np.savez(tmp_path / "one.npz", x=np.ones((4, 2)))
    x, ids, _, _ = all_of(tmp_path / "one.npz", SEQUENCE)
    assert x.shape == (1, 4, 2) and ids == ["0"]
    x, ids, _, _ = all_of(np.ones((4, 2)), SEQUENCE)
    assert x.shape == (1, 4, 2) and ids == ["0"]


def test_an_array_of_the_wrong_shape_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 4, 3)))
    assert error(tmp_path / "x.npy", SEQUENCE) == (
        f"{tmp_path / 'x.npy'}: x has shape (5, 4, 3); this run's model takes (N, 4, 2) for N "
        "inputs, or (4, 2) for one")
    np.savez(tmp_path / "x.npz", x=np.ones((5, 4)))
    assert error(tmp_path / "x.npz", TABLE) == (
        f"{tmp_path / 'x.npz'}: x has shape (5, 4); this run's model takes (N, 5) for N inputs, "
        "or (5,) for one")
    assert error(np.ones(3), TABLE) == ("the array: x has shape (3,); this run's model takes "
                                        "(N, 5) for N inputs, or (5,) for one")


def test_npz_with_true_targets(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 4, 2)).astype(np.float32)
    y = np.arange(15, dtype=np.float64).reshape(5, 3)
    np.savez_compressed(tmp_path / "s.npz", x=x, y=y)
    got_x, ids, got_y, batches = all_of(tmp_path / "s.npz", SEQUENCE, batch_size=2)
    assert [len(b.x) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(got_x, x)
    assert got_y.dtype == np.float32 and got_y.tolist() == y.tolist()
    assert ids == ["0", "1", "2", "3", "4"]


def test_regression_targets_of_the_wrong_shape(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 4, 2)), y=np.zeros(2))
    assert error(tmp_path / "s.npz", SEQUENCE) == (
        f"{tmp_path / 's.npz'}: y has shape (2,); this run predicts 3 targets: (N, 3)")


def test_npz_x_is_read_from_the_zip_batch_by_batch(tmp_path):
    """A bad value near the end is found only when its batch is read."""
    x = np.ones((6, 3))
    x[5, 1] = np.nan
    np.savez(tmp_path / "x.npz", x=x)
    batches = read_batches(tmp_path / "x.npz", NPZ_CLASSES, 2)
    assert next(batches).ids == ["0", "1"]
    assert next(batches).ids == ["2", "3"]
    with pytest.raises(UserError) as e:
        next(batches)
    assert str(e.value) == (f"{tmp_path / 'x.npz'}: x holds NaN or infinite values (first at "
                            "index 5); dltrain does not fill in missing values: fix or drop those "
                            "inputs")


def test_npz_fortran_order_reads_the_same(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    np.savez(tmp_path / "f.npz", x=x)
    got, _, _, _ = all_of(tmp_path / "f.npz", NPZ_CLASSES, batch_size=3)
    np.testing.assert_array_equal(got, x)


def test_class_labels_of_an_npz(tmp_path):
    """Integer labels are class names when every class name is an integer (an npz trained on
    labels 3, 5, 7), class indices otherwise; text labels are names."""
    x = np.zeros((3, 3))
    np.savez(tmp_path / "a.npz", x=x, y=np.array([7, 3, 5]))
    assert all_of(tmp_path / "a.npz", NPZ_CLASSES)[2].tolist() == [2, 0, 1]
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 6)), y=np.array(["tall", "short"]))
    assert all_of(tmp_path / "b.npz", DataInfo(
        name="npz", kind="table", input_shape=(6,), task="classification", num_outputs=2,
        class_names=("short", "tall"), preprocess={"version": 1}))[2].tolist() == [1, 0]
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 1, 4, 4)), y=np.array([9, 0]))
    assert all_of(tmp_path / "c.npz", GREY)[2].tolist() == [9, 0]

    np.savez(tmp_path / "d.npz", x=x, y=np.array([7, 4, 5]))
    assert error(tmp_path / "d.npz", NPZ_CLASSES) == (
        f"{tmp_path / 'd.npz'}: y[1] = '4' was not seen in training; known classes: 3, 5, 7")
    np.savez(tmp_path / "e.npz", x=np.zeros((2, 1, 4, 4)), y=np.array([3, 10]))
    assert error(tmp_path / "e.npz", GREY) == (
        f"{tmp_path / 'e.npz'}: y[1] = 10 is not a class index of this run (0 to 9: "
        + ", ".join(GREY.class_names) + ")")
    np.savez(tmp_path / "f.npz", x=x, y=np.array([3, 5]))
    assert error(tmp_path / "f.npz", NPZ_CLASSES) == (
        f"{tmp_path / 'f.npz'}: x holds 3 inputs but y has shape (2,); y needs one target per "
        "input")
    np.savez(tmp_path / "g.npz", x=x, y=np.array(5))
    assert error(tmp_path / "g.npz", NPZ_CLASSES) == (
        f"{tmp_path / 'g.npz'}: x holds 3 inputs but y has shape (); y needs one target per input")


def test_npz_without_x_or_with_objects(tmp_path):
    np.savez(tmp_path / "a.npz", inputs=np.zeros((2, 3)))
    assert error(tmp_path / "a.npz", NPZ_CLASSES) == (
        f"{tmp_path / 'a.npz'} has no array 'x' (it has: inputs); predict reads x (the inputs) "
        "and, optionally, y (the true targets)")
    np.savez(tmp_path / "o.npz", x=np.array([[{"a": 1}, 2, 3]], dtype=object))
    assert "Python objects" in error(tmp_path / "o.npz", NPZ_CLASSES)
    (tmp_path / "z.npz").write_bytes(b"not a zip")
    assert error(tmp_path / "z.npz", NPZ_CLASSES).startswith(
        f"{tmp_path / 'z.npz'}: cannot read it as a NumPy .npz file of numbers")


def test_arrays_in_memory(tmp_path):
    x = np.arange(10, dtype=np.int64).reshape(2, 5)
    got, ids, y, batches = all_of(x, TABLE)
    np.testing.assert_array_equal(got, x)
    assert got.dtype == np.float32 and ids == ["0", "1"] and y is None
    assert error(np.array([["a"] * 5])) == "the array: x holds <U1 values; the inputs must be numbers"
    assert error(np.zeros((0, 5))) == "the array: x holds no inputs (shape (0, 5))"


# ---------------------------------------------------------------------------------------------
# images
def save_image(path: Path, size=(9, 7), colour=(200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_an_image_file_is_decoded_as_training_decoded_it(tmp_path):
    from dltrain.data.image_folder import decode

    path = save_image(tmp_path / "a.png")
    x, ids, y, batches = all_of(path, IMAGES)
    assert x.shape == (1, 3, 6, 6) and x.dtype == np.float32 and y is None
    assert ids == ["a.png"] and batches[0].id_name == "file"
    np.testing.assert_array_equal(x[0], decode(str(path), 6, grayscale=False).numpy())
    assert x[0, :, 0, 0].tolist() == [200, 30, 30], "raw grey levels 0-255"
    grey, _, _, _ = all_of(path, GREY)
    assert grey.shape == (1, 1, 4, 4)


def test_a_folder_of_class_folders_gives_the_true_classes(tmp_path):
    root = tmp_path / "imgs"
    for name in ("b.png", "a.jpg", "deep/c.png"):
        save_image(root / "dog" / name)
    save_image(root / "cat" / "z.bmp")
    (root / "cat" / "notes.txt").write_text("not an image")
    save_image(root / ".hidden" / "x.png")
    x, ids, y, batches = all_of(root, IMAGES, batch_size=3)
    assert ids == ["cat/z.bmp", "dog/a.jpg", "dog/b.png", "dog/deep/c.png"]
    assert [len(b.ids) for b in batches] == [3, 1]
    assert y.tolist() == [0, 1, 1, 1]


def test_a_folder_without_class_folders_gives_no_classes(tmp_path):
    save_image(tmp_path / "imgs" / "dog" / "a.png")
    save_image(tmp_path / "imgs" / "bird" / "b.png")  # not a class of the run
    _, ids, y, _ = all_of(tmp_path / "imgs", IMAGES)
    assert ids == ["bird/b.png", "dog/a.png"] and y is None
    save_image(tmp_path / "loose" / "a.png")
    save_image(tmp_path / "loose" / "dog" / "b.png")
    _, ids, y, _ = all_of(tmp_path / "loose", IMAGES)
    assert ids == ["a.png", "dog/b.png"] and y is None


def test_a_list_of_images(tmp_path):
    from PIL import Image

    path = save_image(tmp_path / "a.png")
    x, ids, _, _ = all_of([path, Image.new("RGB", (5, 5), (0, 255, 0))], IMAGES)
    assert ids == [str(path), "1"] and x.shape == (2, 3, 6, 6)
    assert x[1, :, 2, 2].tolist() == [0, 255, 0]
    x, ids, _, _ = all_of(Image.new("L", (8, 8), 7), GREY)
    assert ids == ["0"] and x.shape == (1, 1, 4, 4) and x.max() == 7


def test_an_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "imgs" / "cat" / "broken.png"
    save_image(tmp_path / "imgs" / "cat" / "fine.png")
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    message = error(tmp_path / "imgs", IMAGES)
    assert message.startswith(f"cannot read image {bad}: ")


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    assert error(tmp_path / "empty", IMAGES).startswith(
        f"{tmp_path / 'empty'}: no images in the folder or under it (looked for .png, .jpg")


def test_images_for_a_run_that_was_not_trained_on_image_files(tmp_path):
    path = save_image(tmp_path / "a.png")
    assert error(path, TABLE) == (
        f"{path} is an image, but this run's model was not trained on image files (data=csv); "
        "it takes a CSV file with the columns height, colour, weight, or an .npz (x) or .npy "
        "file of raw inputs of shape (N, 5)")
    # digits are images, but of grey levels 0-16 from a CSV: no image files to decode like them
    assert error(tmp_path, DIGITS) == (
        f"{tmp_path} is a folder of images, but this run's model was not trained on image files "
        "(data=digits); it takes an .npz (x) or .npy file of raw inputs of shape (N, 1, 8, 8)")
    with pytest.raises(UserError, match="a list of images, but"):
        read_batches([path], TABLE, 4)
    assert error([path, np.zeros((3, 6, 6))], IMAGES) == (
        "item 1 of the list is a ndarray: a list holds images (file paths or PIL images); give "
        "arrays as one NumPy array (N, *input_shape)")


def test_the_wrong_kind_of_source():
    assert error(42) == ("cannot read inputs from a value of type int: give a path, a NumPy "
                         "array or a list of images")
    assert error([], IMAGES) == "an empty list of images: nothing to predict"

