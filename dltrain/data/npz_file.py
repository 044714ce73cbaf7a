"""Arrays of the user's in a NumPy ``.npz`` file: ``data=npz data.path=FILE``.

``x`` and ``y`` are required, so an ``.npy`` file (one array: inputs without targets) is
refused with the ``np.savez`` call that makes an ``.npz`` of it; ``x_val, y_val`` and ``x_test, y_test`` are used as the validation
and test splits when present, and split off ``x, y`` with ``data.split_seed`` when not. The kind
follows ``x.ndim`` (2: table (N, F), 3: sequence (N, T, F), 4: image (N, C, H, W)), the task
follows ``y``'s dtype (integers, booleans or text: classification; floats: regression) unless
``data.task`` says otherwise. Inputs and regression targets are standardized with training
statistics, per channel for images and per feature otherwise.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from dltrain.data.base import DataInfo, DataSplits
from dltrain.data.prepare import split_indices, standardize
from dltrain.data.registry import DATASETS
from dltrain.errors import UserError
from dltrain.schema import NpzDataConfig

KINDS = {2: "table", 3: "sequence", 4: "image"}
SPLITS = ("", "_val", "_test")  # x, x_val, x_test and their y


def read_arrays(path: Path) -> Dict[str, np.ndarray]:
    if not path.exists():
        raise UserError(f"data.path={path}: no such file")
    try:
        # allow_pickle=False: an .npz with object arrays could run code when loaded
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        reason = str(e).split(". ")[0]  # NumPy's advice to allow pickles is not ours to give
        raise UserError(f"data.path={path}: cannot read it as a NumPy .npz file of numeric "
                        f"arrays ({reason})") from None
    if isinstance(loaded, np.ndarray):
        # an .npy file holds one array: inputs without targets, nothing to learn from (dltrain
        # predict takes it as inputs alone)
        raise UserError(f"data.path={path} is a single NumPy array {loaded.shape} (.npy), with no "
                        "targets to learn; data=npz needs an .npz file with arrays x and y: "
                        "np.savez('data.npz', x=x, y=y)")
    with loaded as npz:
        try:
            return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            reason = str(e).split(". ")[0]
            raise UserError(f"data.path={path}: cannot read it as a NumPy .npz file of numeric "
                            f"arrays ({reason})") from None


def check_arrays(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    present = ", ".join(sorted(arrays)) or "none"
    for name in ("x", "y"):
        if name not in arrays:
            raise UserError(f"{path} has no array {name!r} (it has: {present}); data=npz needs "
                            "x and y, and optionally x_val, y_val, x_test, y_test")
    x = arrays["x"]
    if x.ndim not in KINDS:
        raise UserError(f"{path}: x has shape {x.shape}; it must be (N, F) for a table, "
                        "(N, T, F) for sequences or (N, C, H, W) for images")
    for suffix in SPLITS:
        xs, ys = f"x{suffix}", f"y{suffix}"
        if (xs in arrays) != (ys in arrays):
            have, lack = (xs, ys) if xs in arrays else (ys, xs)
            raise UserError(f"{path} has {have} but no {lack}; give both or neither")
        if xs not in arrays:
            continue
        if len(arrays[xs]) != len(arrays[ys]):
            raise UserError(f"{path}: {xs} has {len(arrays[xs])} rows but {ys} has "
                            f"{len(arrays[ys])}; they must match")
        if arrays[xs].shape[1:] != x.shape[1:]:
            raise UserError(f"{path}: {xs} has samples of shape {arrays[xs].shape[1:]}, "
                            f"but x has {x.shape[1:]}")
        if arrays[ys].ndim != arrays["y"].ndim or arrays[ys].shape[1:] != arrays["y"].shape[1:]:
            raise UserError(f"{path}: {ys} has shape {arrays[ys].shape}, which does not fit "
                            f"y's {arrays['y'].shape}")
        if not np.issubdtype(arrays[xs].dtype, np.number) and arrays[xs].dtype != bool:
            raise UserError(f"{path}: {xs} holds {arrays[xs].dtype} values; x must be numeric")
        if len(arrays[xs]) == 0:
            raise UserError(f"{path}: {xs} is empty")
        for name in (xs, ys):
            values = arrays[name]
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                row = int(np.argwhere(~np.isfinite(values))[0][0])
                raise UserError(f"{path}: {name} holds NaN or infinite values (first at row {row}); "
                                "dltrain does not fill in missing values: fix or drop those rows")


def infer_task(y: np.ndarray) -> str:
    if np.issubdtype(y.dtype, np.floating):
        return "regression"
    if np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "bUS":
        return "classification"
    raise UserError(f"data=npz: y holds {y.dtype} values; use integers (classes) or floats "
                    "(regression)")


def _labels(path: Path, ys: List[np.ndarray]) -> Tuple[List[np.ndarray], Tuple[str, ...]]:
    """Class indices 0..K-1 for every y, with one set of classes across all of them."""
    for name, y in zip(("y", "y_val", "y_test"), ys):
        if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
            raise UserError(f"{path}: {name} has shape {y.shape}; class labels must be (N,)")
    flat = [y.reshape(-1) for y in ys]
    names, codes = np.unique(np.concatenate(flat), return_inverse=True)
    if len(names) < 2:
        raise UserError(f"{path}: y holds the single class {names[0]!r}; a classification needs "
                        "at least two")
    ends = np.cumsum([len(y) for y in flat])[:-1]
    return [c.astype(np.int64) for c in np.split(codes, ends)], tuple(str(n) for n in names)


@DATASETS.register("npz")
def load_npz(cfg: NpzDataConfig) -> DataSplits:
    path = Path(cfg.path).expanduser()
    arrays = read_arrays(path)
    check_arrays(path, arrays)
    task = infer_task(arrays["y"]) if cfg.task == "auto" else cfg.task
    given = [suffix for suffix in SPLITS if f"x{suffix}" in arrays]
    xs = [arrays[f"x{s}"].astype(np.float32) for s in given]
    ys = [arrays[f"y{s}"] for s in given]

    if task == "classification":
        ys, class_names = _labels(path, ys)
        num_outputs = len(class_names)
    else:
        if not all(np.issubdtype(y.dtype, np.number) or y.dtype == bool for y in ys):
            raise UserError(f"{path}: y holds {arrays['y'].dtype} values; a regression needs numbers")
        ys = [(y.reshape(-1, 1) if y.ndim == 1 else y.reshape(len(y), -1)).astype(np.float32)
              for y in ys]
        class_names, num_outputs = (), ys[0].shape[1]

    # the splits the file does not give are drawn from x, y (fractions of all of x)
    x, y = xs[0], ys[0]
    fractions = dataclasses.replace(
        cfg,
        val_fraction=0.0 if "_val" in given else cfg.val_fraction,
        test_fraction=0.0 if "_test" in given else cfg.test_fraction,
    )
    train, val, test = split_indices(y, fractions, stratify=task == "classification")
    parts = {"": (x[train], y[train]), "_val": (x[val], y[val]), "_test": (x[test], y[test])}
    for suffix, xi, yi in zip(given[1:], xs[1:], ys[1:]):
        parts[suffix] = (xi, yi)

    kind = KINDS[x.ndim]
    info = DataInfo(name="npz", kind=kind, input_shape=tuple(x.shape[1:]), task=task,
                    num_outputs=num_outputs, class_names=class_names)
    return standardize([parts[s] for s in SPLITS], info,
                       per="channel" if kind == "image" else "feature")
