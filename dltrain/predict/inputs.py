"""New inputs for a trained model, read the way training read its data: :func:`read_batches`.

What a run takes follows its preprocessing record (:mod:`dltrain.data.preprocess`):

- a run trained on a CSV file (``table``) reads a CSV with the training columns: the header
  names them, in any order; extra columns are ignored; the target column is optional (it gives
  the true targets). Numbers are read as they are, text columns are one-hot encoded over the
  categories seen in training. The ids are the data rows' numbers, from 1 (the header and blank
  lines are not counted; error messages give the file's line numbers, the header being line 1);
- a run trained on image files (``image``: image_folder, mnist, cifar10...) reads an image file,
  a folder of them (nested folders allowed; when the first-level folders are all class names of
  the run, they give the true classes) or a list of images (paths or PIL images), each decoded
  and resized exactly as training decoded it. The ids are file paths relative to the folder;
- every run reads an ``.npz`` file (``x``, and ``y`` for the true targets) or an ``.npy`` file of
  raw inputs ``(N, *input_shape)``, or a NumPy array (``(N, *input_shape)`` or one input). The
  ids are the indices, from 0.

Raw means before standardization: the numbers of a table (text columns one-hot), grey levels
0-255 of an image. :class:`dltrain.predict.model.Predictor` applies the training scaling.

Everything streams: a CSV is read row by row, an ``.npy`` file through a memory map, an ``.npz``
member by member from its zip entry, images one batch at a time. Every mistake is a one-line
:class:`UserError` naming the file (and line and column where there is one).
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

from dltrain.data.base import DataInfo
from dltrain.data.csv_file import (
    check_header,
    csv_rows,
    is_missing,
    missing_value,
    number,
)
from dltrain.errors import UserError

# suffixes read as images (those torchvision's ImageFolder reads, and .gif)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
STDIN = "-"
STDIN_NAME = "standard input"


@dataclass
class Batch:
    """Up to ``batch_size`` inputs, ready for :meth:`TrainedModel.outputs`."""

    x: np.ndarray  # raw float32 (n, *info.input_shape)
    ids: List[str]  # per input: its data row number, file name or index (see the module doc)
    # the true targets when the input holds them: class indices (int64, (n,)) or values in the
    # target's own units (float32, (n, targets))
    y: Optional[np.ndarray] = None
    id_name: str = "index"  # what the ids are: "row", "file" or "index"


def read_batches(source: Any, info: DataInfo, batch_size: int) -> Iterator[Batch]:
    """The inputs of ``source`` in batches of ``batch_size`` (the last may be smaller).

    ``source``: a path (str or Path) to a CSV file (``-``: standard input), an ``.npz`` or
    ``.npy`` file, an image file or a folder of images; a NumPy array; a PIL image or a list of
    images (paths or PIL images). Raises :class:`UserError` for input this run cannot read; the
    checks that need no reading happen at once, the rest as the batches are read.
    """
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: must be at least 1")
    if isinstance(source, np.ndarray):
        return _array_batches(source, info, batch_size, "the array")
    if _is_pil(source):
        source = [source]
    if isinstance(source, (list, tuple)):
        _needs_images(info, "a list of images")
        for i, item in enumerate(source):
            if not isinstance(item, (str, Path)) and not _is_pil(item):
                raise UserError(f"item {i} of the list is a {type(item).__name__}: a list holds "
                                "images (file paths or PIL images); give arrays as one NumPy "
                                "array (N, *input_shape)")
        items = [(str(s) if isinstance(s, (str, Path)) else str(i), s) for i, s in enumerate(source)]
        if not items:
            raise UserError("an empty list of images: nothing to predict")
        return _image_batches(items, info, batch_size)
    if not isinstance(source, (str, Path)):
        raise UserError(f"cannot read inputs from a value of type {type(source).__name__}: give "
                        "a path, a NumPy array or a list of images")
    if str(source) == STDIN:
        _needs_table(info, "- means a CSV on standard input")
        return _csv_batches(None, info, batch_size)
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        _needs_images(info, f"{path} is a folder of images")
        return _folder_batches(path, info, batch_size)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _array_batches(_open_npy(path), info, batch_size, str(path))
    if suffix == ".npz":
        return _npz_batches(path, info, batch_size)
    if suffix in IMAGE_SUFFIXES:
        _needs_images(info, f"{path} is an image")
        return _image_batches([(path.name, path)], info, batch_size)
    _needs_table(info, f"{path} is read as a CSV file (it is not .npz, .npy or an image)")
    return _csv_batches(path, info, batch_size)


# ---------------------------------------------------------------------------------------------
# what a run takes
def takes(info: DataInfo) -> str:
    """The inputs this run's model reads, for messages."""
    shape = ", ".join(map(str, info.input_shape))
    arrays = f"an .npz (x) or .npy file of raw inputs of shape (N, {shape})"
    if "table" in info.preprocess:
        return f"a CSV file with the columns {_column_names(info)}, or {arrays}"
    if "image" in info.preprocess:
        return f"image files (a file or a folder of them), or {arrays}"
    return arrays


def _needs_table(info: DataInfo, what: str) -> None:
    if "table" not in info.preprocess:
        raise UserError(f"{what}, but this run's model was not trained on a CSV file "
                        f"(data={info.name}), so it has no columns to read; it takes {takes(info)}")


def _needs_images(info: DataInfo, what: str) -> None:
    if "image" not in info.preprocess:
        raise UserError(f"{what}, but this run's model was not trained on image files "
                        f"(data={info.name}); it takes {takes(info)}")


def _column_names(info: DataInfo) -> str:
    return ", ".join(c["name"] for c in info.preprocess["table"]["columns"])


# ---------------------------------------------------------------------------------------------
# CSV
def _csv_batches(path: Optional[Path], info: DataInfo, batch_size: int) -> Iterator[Batch]:
    name = STDIN_NAME if path is None else str(path)
    try:
        if path is None:
            f = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
            try:
                yield from _read_csv(f, name, info, batch_size)
            finally:
                f.detach()  # closing (or collecting) the wrapper would close standard input
        else:
            with open(path, newline="", encoding="utf-8-sig") as f:
                yield from _read_csv(f, name, info, batch_size)
    except OSError as e:
        raise UserError(f"{name}: cannot read it: {e.strerror or e}") from None


def _read_csv(f: IO[str], name: str, info: DataInfo, batch_size: int) -> Iterator[Batch]:
    table = info.preprocess["table"]
    columns: List[Dict[str, Any]] = table["columns"]
    target: str = table["target"]
    width = int(info.input_shape[0])
    rows = csv_rows(f, name)
    header_line, header = next(rows, (0, None))
    if header is None:
        raise UserError(f"{name} is empty: a CSV file needs a header line and data rows")
    check_header(header, name)
    where = {column: i for i, column in enumerate(header)}
    missing = [c["name"] for c in columns if c["name"] not in where]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise UserError(f"{name}, line {header_line}: no column{plural} "
                        f"{', '.join(map(repr, missing))} in the header; this run's model reads "
                        f"the columns {_column_names(info)}")
    # each feature column: where it is in the file, where it goes in x, and its categories
    plan = []
    offset = 0
    for c in columns:
        categories = c["categories"]
        index = None if categories is None else {v: i for i, v in enumerate(categories)}
        plan.append((c["name"], where[c["name"]], offset, index))
        offset += 1 if categories is None else len(categories)
    if offset != width:
        raise UserError(f"the checkpoint's preprocessing record gives {offset} features but the "
                        f"model takes {width}: the checkpoint is damaged")
    target_at = where.get(target)
    classes = {c: i for i, c in enumerate(info.class_names)}
    classification = info.task == "classification"

    x = np.zeros((batch_size, width), dtype=np.float32)
    y = np.zeros((batch_size,) if classification else (batch_size, 1),
                 dtype=np.int64 if classification else np.float32)
    ids: List[str] = []
    count = 0
    for line, cells in rows:
        n = len(ids)
        x[n] = 0.0
        for column, at, offset, index in plan:
            cell = cells[at]
            if is_missing(cell):
                raise missing_value(f"{name}, line {line}, column {column!r}", cell,
                                    "fill it in or drop the row")
            if index is None:
                value = number(cell)
                if value is None:
                    raise UserError(f"{name}, line {line}, column {column!r}: {cell!r} is not a "
                                    "number (the column held numbers in training)")
                x[n, offset] = value
            else:
                code = index.get(cell)
                if code is None:
                    raise UserError(f"{name}, line {line}, column {column!r}: {cell!r} was not "
                                    f"seen in training; known: {', '.join(index)}")
                x[n, offset + code] = 1.0
        if target_at is not None:
            cell = cells[target_at]
            at = f"{name}, line {line}, column {target!r}"
            if is_missing(cell):
                raise missing_value(at, cell, "fill it in, drop the row, or drop the target "
                                    "column to predict without metrics")
            if classification:
                code = classes.get(cell)
                if code is None:
                    raise UserError(f"{at}: class {cell!r} was not seen in training; known: "
                                    f"{', '.join(info.class_names)}")
                y[n] = code
            else:
                value = number(cell)
                if value is None:
                    raise UserError(f"{at}: {cell!r} is not a number (the target is numeric)")
                y[n, 0] = value
        count += 1
        ids.append(str(count))
        if len(ids) == batch_size:
            yield _csv_batch(x, y, ids, target_at is not None)
            ids = []
    if count == 0:
        raise UserError(f"{name} has a header line but no data rows")
    if ids:
        yield _csv_batch(x[:len(ids)], y[:len(ids)], ids, target_at is not None)


def _csv_batch(x: np.ndarray, y: np.ndarray, ids: List[str], has_y: bool) -> Batch:
    # copies: the buffers are refilled for the next batch
    return Batch(x.copy(), ids, y.copy() if has_y else None, "row")


# ---------------------------------------------------------------------------------------------
# arrays
def _open_npy(path: Path) -> np.ndarray:
    try:
        # a memory map: the batches are read from disk as they are needed
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).split(". ")[0]  # NumPy's advice to allow pickles is not ours to give
        raise UserError(f"{path}: cannot read it as a NumPy .npy file of numbers ({reason})") from None


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _count(shape: Sequence[int], dtype: np.dtype, info: DataInfo, name: str) -> Tuple[int, bool]:
    """(number of inputs, whether the array is one input without the batch axis) of an array of
    ``shape``; any shape but (N, *input_shape) or input_shape is refused."""
    expected = tuple(info.input_shape)
    one = tuple(shape) == expected
    if not one and tuple(shape[1:]) != expected:
        raise UserError(f"{name}: x has shape {_shape(shape)}; this run's model takes "
                        f"(N, {', '.join(map(str, expected))}) for N inputs, or {_shape(expected)} "
                        "for one")
    if dtype.kind not in "biuf":
        raise UserError(f"{name}: x holds {dtype} values; the inputs must be numbers")
    n = 1 if one else int(shape[0])
    if n == 0:
        raise UserError(f"{name}: x holds no inputs (shape {_shape(shape)})")
    return n, one


def _array_batches(x: Any, info: DataInfo, batch_size: int, name: str) -> Iterator[Batch]:
    n, one = _count(x.shape, x.dtype, info, name)
    if one:
        x = x[None]
    return _slices(lambda start, stop: x[start:stop], n, None, batch_size, name)


def _slices(read: Callable[[int, int], Any], n: int, y: Optional[np.ndarray], batch_size: int,
            name: str) -> Iterator[Batch]:
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        # a copy: a memory map's or a zip buffer's rows are read-only, and torch wants to own them
        chunk = np.array(read(start, stop), dtype=np.float32)
        _finite(chunk, start, name)
        yield Batch(chunk, [str(i) for i in range(start, stop)],
                    None if y is None else y[start:stop], "index")


def _finite(chunk: np.ndarray, start: int, name: str) -> None:
    if not np.isfinite(chunk).all():
        row = start + int(np.argwhere(~np.isfinite(chunk))[0][0])
        raise UserError(f"{name}: x holds NaN or infinite values (first at index {row}); dltrain "
                        "does not fill in missing values: fix or drop those inputs")


def _targets(y: np.ndarray, n: int, info: DataInfo, name: str) -> np.ndarray:
    """The true targets ``y`` of an array input: class indices, or values (n, targets)."""
    if y.ndim == 0 or len(y) != n:
        raise UserError(f"{name}: x holds {n} input{'s' if n > 1 else ''} but y has shape "
                        f"{_shape(y.shape)}; y needs one target per input")
    if info.task == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise UserError(f"{name}: y has shape {_shape(y.shape)}; class labels must be (N,)")
        return _class_indices(np.asarray(y), info, name)
    k = info.num_outputs
    if y.dtype.kind not in "biuf":
        raise UserError(f"{name}: y holds {y.dtype} values; a regression's targets are numbers")
    shape = y.shape
    y = np.asarray(y, dtype=np.float32).reshape(n, -1) if y.ndim <= 2 else y
    if y.ndim != 2 or y.shape[1] != k:
        raise UserError(f"{name}: y has shape {_shape(shape)}; this run predicts {k} "
                        f"target{'s' if k > 1 else ''}: (N,{' ' + str(k) if k > 1 else ''})")
    return y


def _class_indices(y: np.ndarray, info: DataInfo, name: str) -> np.ndarray:
    """Labels → class indices. Integers are class indices (0 to classes-1), except when every
    class name of the run is itself an integer (a CSV's or an npz's numeric labels): then they
    are the names, as text labels are."""
    names = info.class_names
    integer_names = all(n.lstrip("+-").isdigit() for n in names)
    if y.dtype.kind in "iu" and not integer_names:
        bad = (y < 0) | (y >= len(names))
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"{name}: y[{i}] = {y[i]} is not a class index of this run (0 to "
                            f"{len(names) - 1}: {', '.join(names)})")
        return y.astype(np.int64)
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(y), dtype=np.int64)
    for i, label in enumerate(y.tolist()):
        label = str(label.decode() if isinstance(label, bytes) else label)
        if label not in index:
            raise UserError(f"{name}: y[{i}] = {label!r} was not seen in training; known "
                            f"classes: {', '.join(names)}")
        out[i] = index[label]
    return out


def _npz_batches(path: Path, info: DataInfo, batch_size: int) -> Iterator[Batch]:
    """``x`` (and ``y``) of an .npz file, x read from its zip entry one batch at a time."""
    name = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {m[:-len(".npy")]: m for m in archive.namelist() if m.endswith(".npy")}
            if "x" not in members:
                raise UserError(f"{path} has no array 'x' (it has: "
                                f"{', '.join(sorted(members)) or 'none'}); predict reads x "
                                "(the inputs) and, optionally, y (the true targets)")
            with archive.open(members["x"]) as xf:
                x = _NpyStream(xf, name)
                n, one = _count(x.shape, x.dtype, info, name)
                y = None
                if "y" in members:
                    with archive.open(members["y"]) as yf:  # targets are small: read at once
                        y = _targets(_read_npy(yf), n, info, name)
                rows = 1 if one else batch_size  # one input is read whole
                yield from _slices(lambda start, stop: x.read(stop - start, one), n, y, rows, name)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        reason = str(e).split(". ")[0]
        raise UserError(f"{path}: cannot read it as a NumPy .npz file of numbers ({reason})") from None


class _NpyStream:
    """An .npy entry of a zip file, read a few rows at a time: its shape and dtype from the
    header, then :meth:`read` of the next rows in order. (A Fortran-ordered array, or a header
    of a version NumPy has no public reader for, is read whole.)"""

    def __init__(self, f: IO[bytes], name: str) -> None:
        version = np.lib.format.read_magic(f)
        self.whole: Optional[np.ndarray] = None
        if version in ((1, 0), (2, 0)):
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        else:
            fortran = True
        if fortran:
            f.seek(0)
            self.whole = _read_npy(f)
            shape, dtype = self.whole.shape, self.whole.dtype
        if dtype.hasobject:
            raise UserError(f"{name}: x holds Python objects; the inputs must be numbers")
        self.f, self.shape, self.dtype = f, tuple(shape), dtype
        self.done = 0

    def read(self, rows: int, one: bool) -> np.ndarray:
        if self.whole is not None:
            out = self.whole if one else self.whole[self.done:self.done + rows]
        else:
            shape = self.shape if one else (rows, *self.shape[1:])
            count = int(np.prod(shape, dtype=np.int64))
            size = count * self.dtype.itemsize
            data = self.f.read(size)
            if len(data) != size:
                raise EOFError("the file ends before its array x does")
            out = np.frombuffer(data, dtype=self.dtype, count=count).reshape(shape)
        self.done += rows
        return out[None] if one else out


def _read_npy(f: IO[bytes]) -> np.ndarray:
    # allow_pickle=False: an array of Python objects could run code when read (a ValueError)
    return np.lib.format.read_array(f, allow_pickle=False)


# ---------------------------------------------------------------------------------------------
# images
def _is_pil(source: Any) -> bool:
    image = sys.modules.get("PIL.Image")  # a PIL image exists only when PIL was imported
    return image is not None and isinstance(source, image.Image)


def _folder_batches(root: Path, info: DataInfo, batch_size: int) -> Iterator[Batch]:
    """The images under ``root`` (nested folders walked in sorted order; hidden files and
    folders skipped). When every first-level folder is a class of the run and no image lies at
    the top, the folders give the true classes."""
    try:
        top = sorted(e for e in os.listdir(root) if not e.startswith("."))
    except OSError as e:
        raise UserError(f"{root}: cannot read the folder: {e.strerror or e}") from None
    folders = [e for e in top if (root / e).is_dir()]
    loose = [e for e in top if (root / e).is_file() and e.lower().endswith(IMAGE_SUFFIXES)]
    classes = {c: i for i, c in enumerate(info.class_names)}
    labelled = bool(folders) and not loose and all(f in classes for f in folders)

    def items() -> Iterator[Tuple[str, Path, Optional[int]]]:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for file in sorted(filenames):
                if file.startswith(".") or not file.lower().endswith(IMAGE_SUFFIXES):
                    continue
                path = Path(dirpath) / file
                rel = path.relative_to(root)
                yield rel.as_posix(), path, classes[rel.parts[0]] if labelled else None

    found = False
    chunk: List[Tuple[str, Path, Optional[int]]] = []
    for item in items():
        found = True
        chunk.append(item)
        if len(chunk) == batch_size:
            yield _image_batch(chunk, info, labelled)
            chunk = []
    if chunk:
        yield _image_batch(chunk, info, labelled)
    if not found:
        raise UserError(f"{root}: no images in the folder or under it (looked for "
                        f"{', '.join(IMAGE_SUFFIXES)})")


def unlabelled_folders(root: Union[str, Path], info: DataInfo) -> List[str]:
    """First-level folders of ``root`` that are not classes of the run, when some others are:
    why an image folder gave no true classes."""
    root = Path(root)
    try:
        folders = sorted(e for e in os.listdir(root) if not e.startswith(".") and (root / e).is_dir())
    except OSError:
        return []
    strangers = [f for f in folders if f not in info.class_names]
    return strangers if len(strangers) < len(folders) else []


def _image_batches(items: List[Tuple[str, Any]], info: DataInfo,
                   batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(items), batch_size):
        chunk = [(id_, source, None) for id_, source in items[start:start + batch_size]]
        yield _image_batch(chunk, info, False)


def _image_batch(chunk: List[Tuple[str, Any, Optional[int]]], info: DataInfo,
                 labelled: bool) -> Batch:
    from dltrain.data.image_folder import decode, fit

    spec = info.preprocess["image"]
    size, grayscale = int(spec["size"]), int(spec["channels"]) == 1
    x = np.empty((len(chunk), *info.input_shape), dtype=np.float32)
    for i, (_, source, _) in enumerate(chunk):
        if isinstance(source, (str, Path)):
            x[i] = decode(str(source), size, grayscale).numpy()
        else:
            x[i] = fit(source, size, grayscale)
    y = np.array([c for _, _, c in chunk], dtype=np.int64) if labelled else None
    return Batch(x, [id_ for id_, _, _ in chunk], y, "file")
