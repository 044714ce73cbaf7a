"""Synthetic classification data of any shape, for benchmarks and quick checks without files.

Each class has a fixed random prototype (values of unit std, smoothed over neighbouring pixels or
steps); a sample is its class's prototype plus Gaussian noise. The noise is scaled to the input
size so that two prototypes lie ``SEPARATION`` noise standard deviations apart whatever the shape:
a single value tells little about the class, the whole input tells it almost surely (pairwise
Bayes error about 0.6%). Learnable, not noise, and not solved in one step either: a
nearest-centroid classifier fitted on 3000 samples scores about 0.8-0.95. Everything is drawn
from ``data.seed``; the split is fixed by ``data.split_seed``.
"""

from __future__ import annotations

import math

import numpy as np

from dltrain.data.base import DataInfo, DataSplits
from dltrain.data.prepare import split_and_standardize
from dltrain.data.registry import DATASETS
from dltrain.schema import SyntheticDataConfig

KINDS = {1: "table", 2: "sequence", 3: "image"}
SEPARATION = 5.0


def prototypes_and_noise(cfg: SyntheticDataConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    shape = tuple(cfg.shape)
    prototypes = _smooth(rng.normal(size=(cfg.num_classes, *shape)), len(shape))
    y = rng.permutation(np.arange(cfg.num_samples) % cfg.num_classes)  # balanced classes
    # two unit-std prototypes of D values lie sqrt(2 D) apart on average
    noise = math.sqrt(2 * math.prod(shape)) / SEPARATION
    x = prototypes[y] + noise * rng.normal(size=(cfg.num_samples, *shape))
    return x.astype(np.float32), y.astype(np.int64)


def _smooth(protos: np.ndarray, dims: int) -> np.ndarray:
    """Average neighbouring positions of image rows/columns and sequence steps, so prototypes
    have local structure for convolutions to find, then rescale to unit std."""
    if dims >= 2:
        axes = (-2, -1) if dims == 3 else (-2,)  # (C, H, W): H and W; (T, F): T
        for axis in axes:
            protos = (protos + np.roll(protos, 1, axis) + np.roll(protos, -1, axis)) / 3
    return protos / protos.std(axis=tuple(range(1, protos.ndim)), keepdims=True)


@DATASETS.register("synthetic")
def load_synthetic(cfg: SyntheticDataConfig) -> DataSplits:
    x, y = prototypes_and_noise(cfg)
    shape = tuple(cfg.shape)
    kind = KINDS[len(shape)]
    info = DataInfo(name="synthetic", kind=kind, input_shape=shape, task="classification",
                    num_outputs=cfg.num_classes,
                    class_names=tuple(str(c) for c in range(cfg.num_classes)))
    per = "channel" if kind == "image" else "feature"
    return split_and_standardize(x, y, info, cfg, per=per)
