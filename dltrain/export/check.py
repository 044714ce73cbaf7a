"""Every export checks itself: the saved model runs on raw inputs of several batch sizes and its
outputs are compared with the PyTorch model's.

The inputs are drawn, not read: around the training split's recorded mean with its std (pixel
values rounded and clipped to 0-255, each text column of a table one-hot over its categories),
so the check needs nothing but the checkpoint. Batches of 1 and 3 prove the dynamic batch
dimension (the export traced a batch of 2); one of 64 covers more of the input range.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dltrain.data.base import DataInfo
from dltrain.errors import UserError
from dltrain.predict.model import TrainedModel

EXPORT_BATCH = 2  # the batch size traced; 0 and 1 would be specialized by torch.export
CHECK_BATCHES: Sequence[int] = (1, 3, 64)
SEED = 0


def sample_inputs(info: DataInfo, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` raw inputs (float32, ``(n, *input_shape)``) shaped like the training data."""
    scale = info.preprocess.get("scale")
    mean, std = ((np.asarray(scale["mean"]), np.asarray(scale["std"])) if scale
                 else (np.zeros(()), np.ones(())))
    x = rng.standard_normal((n, *info.input_shape)) * std + mean
    if "image" in info.preprocess:
        x = np.clip(np.round(x), 0, 255)
    table = info.preprocess.get("table")
    if table:
        start = 0
        for column in table["columns"]:
            categories = column["categories"]
            if categories is None:
                start += 1
                continue
            width = len(categories)
            x[:, start:start + width] = np.eye(width)[rng.integers(width, size=n)]
            start += width
    return x.astype(np.float32)


def difference(reference: np.ndarray, got: np.ndarray, info: DataInfo) -> float:
    """The largest absolute difference; for regression in units of the target's std, so that a
    target measured in millions is held to the same precision as one measured in units (float32
    alone rounds 1e6 to 0.06)."""
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64))
    diff[np.isnan(reference) & np.isnan(got)] = 0.0  # a NaN both sides agree on
    if info.task == "regression" and info.target_std:
        diff = diff / np.asarray(info.target_std)
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))


def compare(run: Callable[[np.ndarray], np.ndarray], trained: TrainedModel, what: str,
            tolerance: float) -> float:
    """The largest difference between ``run`` (the exported model) and the PyTorch model over
    :data:`CHECK_BATCHES`; a :class:`UserError` when it is above ``tolerance``."""
    rng = np.random.default_rng(SEED)
    worst = 0.0
    batches = ", ".join(map(str, CHECK_BATCHES))
    for n in CHECK_BATCHES:
        x = sample_inputs(trained.info, n, rng)
        reference, got = trained.outputs(x), np.asarray(run(x))
        if got.shape != reference.shape:
            raise UserError(f"{what} gives outputs of shape {got.shape} for a batch of {n}, "
                            f"PyTorch {reference.shape}; the export was not written")
        worst = max(worst, difference(reference, got, trained.info))
    if not worst <= tolerance:
        raise UserError(f"{what} gives other outputs than PyTorch: max difference {worst:.3g}"
                        f"{_unit(trained.info)}, above the limit {tolerance:g}, on random raw "
                        f"inputs of batch sizes {batches}; the export was not written")
    return worst


def describe(what: str, worst: float, tolerance: float, info: DataInfo) -> str:
    """The line that reports a passed check."""
    return (f"checked: {what} matches PyTorch on random raw inputs (batches of "
            f"{', '.join(map(str, CHECK_BATCHES))}): max difference {worst:.2g}{_unit(info)} "
            f"(limit {tolerance:g})")


def _unit(info: DataInfo) -> str:
    return " target stds" if info.task == "regression" and info.target_std else ""
