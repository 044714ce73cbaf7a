"""Generated sequence tasks: sine-wave forecasting and the adding problem.

Both are drawn from ``data.split_seed`` (the same seed always gives the same samples and the same
split) and kept in their natural units, unstandardized: the values are already of order one, and
the adding problem's baseline (MSE 0.167 for always predicting the mean) stays readable.
"""

from __future__ import annotations

import numpy as np
import torch

from dltrain.data import preprocess
from dltrain.data.base import DataInfo, DataSplits, Split
from dltrain.data.prepare import split_indices
from dltrain.data.registry import DATASETS
from dltrain.schema import AddingDataConfig, DataConfig, SineDataConfig

# periods of the sine waves, in time steps
SINE_PERIODS = (8.0, 40.0)
SINE_AMPLITUDES = (0.5, 1.5)


def sine_waves(cfg: SineDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, seq_len, 1): noisy sine waves, each with its own frequency, phase and amplitude;
    ``y`` (N, horizon): the next ``horizon`` values of the same noisy wave."""
    rng = np.random.default_rng(cfg.split_seed)
    n, steps = cfg.num_samples, cfg.seq_len + cfg.horizon
    period = rng.uniform(*SINE_PERIODS, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    amplitude = rng.uniform(*SINE_AMPLITUDES, size=(n, 1))
    t = np.arange(steps)
    wave = amplitude * np.sin(2 * np.pi * t / period + phase) + rng.normal(0, cfg.noise, (n, steps))
    wave = wave.astype(np.float32)
    return wave[:, :cfg.seq_len, None], wave[:, cfg.seq_len:]


def adding_problem(cfg: AddingDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, seq_len, 2): a value uniform in [0, 1] and a marker that is 1 at two steps, one
    in each half of the sequence (Le et al. 2015); ``y`` (N, 1): the sum of the two marked values."""
    rng = np.random.default_rng(cfg.split_seed)
    n, t = cfg.num_samples, cfg.seq_len
    values = rng.uniform(0, 1, size=(n, t))
    half = t // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, t, size=n)
    marker = np.zeros((n, t))
    rows = np.arange(n)
    marker[rows, first] = marker[rows, second] = 1.0
    x = np.stack([values, marker], axis=-1).astype(np.float32)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return x, y


def _regression_splits(x: np.ndarray, y: np.ndarray, info: DataInfo, cfg: DataConfig) -> DataSplits:
    parts = split_indices(y, cfg, stratify=False)
    info = preprocess.record(info)  # the model reads the values as they are
    return DataSplits(*(Split(torch.from_numpy(x[ix]), torch.from_numpy(y[ix])) for ix in parts),
                      info=info)


@DATASETS.register("sine")
def load_sine(cfg: SineDataConfig) -> DataSplits:
    x, y = sine_waves(cfg)
    info = DataInfo(name="sine", kind="sequence", input_shape=(cfg.seq_len, 1), task="regression",
                    num_outputs=cfg.horizon)
    return _regression_splits(x, y, info, cfg)


@DATASETS.register("adding")
def load_adding(cfg: AddingDataConfig) -> DataSplits:
    x, y = adding_problem(cfg)
    info = DataInfo(name="adding", kind="sequence", input_shape=(cfg.seq_len, 2),
                    task="regression", num_outputs=1)
    return _regression_splits(x, y, info, cfg)
