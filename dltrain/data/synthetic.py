"""Synthetic classification data of any shape, for benchmarks and quick checks without files.

Each class has a fixed random prototype (values of unit std); a sample is its class's prototype
plus Gaussian noise. The noise is scaled to the input size so that two prototypes lie
``SEPARATION`` noise standard deviations apart whatever the shape: a single value tells little
about the class, the whole input tells it almost surely (pairwise Bayes error about 0.6%).
Learnable, not noise, and not solved in one step either: a nearest-centroid classifier fitted on
3000 samples scores about 0.75-0.95. Everything is drawn from ``data.seed``; the split is fixed by
``data.split_seed``.

Image and sequence prototypes are smooth, as real images and signals are (a few bumps and dips
per side), so pooling averages the white noise away and keeps the class signal. Prototypes of
nearly independent pixels put the class signal at the finest scale, 16 times under the noise in
each pixel of a 3x32x32 image, and a CNN's pooling discarded it with the noise (issue 7).
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
# a change that draws other samples from the same parameters bumps
# dltrain.fingerprint.GENERATORS["synthetic"], so older runs see that their data changed
# std of the Gaussian blur of the prototypes, as a fraction of the image side or sequence length:
# 2 pixels of a 32x32 image, which the default CNN pools to 8x8 cells of 4x4 pixels
BLUR = 1 / 16


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
    """Blur image rows/columns and sequence steps with a Gaussian of std ``BLUR`` times the axis
    (circularly, in Fourier space), then rescale to unit std. Table columns are separate
    features, so they stay independent."""
    axes = {1: (), 2: (-2,), 3: (-2, -1)}[dims]  # (F,): none; (T, F): T; (C, H, W): H and W
    for axis in axes:
        n = protos.shape[axis]
        sigma = BLUR * n
        gain = np.exp(-2 * (np.pi * sigma * np.fft.rfftfreq(n)) ** 2)
        gain = gain.reshape((n // 2 + 1,) + (1,) * (-axis - 1))
        protos = np.fft.irfft(np.fft.rfft(protos, axis=axis) * gain, n=n, axis=axis)
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
