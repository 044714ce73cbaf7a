"""The generated sequence tasks: sine-wave forecasting and the adding problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dltrain.data import load_data
from dltrain.models import build_model
from dltrain.schema import AddingDataConfig, SineDataConfig

from data_support import config


def test_sine_shapes_and_info():
    data = load_data(SineDataConfig(name="sine", num_samples=200, seq_len=30, horizon=3))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        "sequence", (30, 1), "regression", 3)
    assert info.target_mean == () and info.target_std == ()
    for _, split in data.splits():
        assert split.x.shape[1:] == (30, 1) and split.y.shape[1:] == (3,)
        assert split.x.dtype == split.y.dtype == torch.float32
    assert sum(len(s) for _, s in data.splits()) == 200


def test_sine_targets_continue_the_wave():
    """Without noise every window is A sin(2π t / P + φ): the targets continue the same wave,
    so a wave fitted to the window predicts them."""
    data = load_data(SineDataConfig(name="sine", num_samples=50, seq_len=40, horizon=2, noise=0.0))
    x, y = data.train.x[:, :, 0].double().numpy(), data.train.y.double().numpy()
    for window, target in zip(x[:10], y[:10]):
        # the sequence satisfies s[t+1] = 2 cos(ω) s[t] - s[t-1]; estimate 2 cos(ω) from the window
        a = np.linalg.lstsq(window[1:-1, None], window[2:] + window[:-2], rcond=None)[0][0]
        nxt = a * window[-1] - window[-2]
        assert nxt == pytest.approx(target[0], abs=1e-6)
        assert a * nxt - window[-1] == pytest.approx(target[1], abs=1e-6)


def test_sine_noise_and_seed():
    clean = load_data(SineDataConfig(name="sine", num_samples=100, noise=0.0))
    noisy = load_data(SineDataConfig(name="sine", num_samples=100, noise=0.1))
    again = load_data(SineDataConfig(name="sine", num_samples=100, noise=0.1))
    other = load_data(SineDataConfig(name="sine", num_samples=100, noise=0.1, split_seed=1))
    residual = (noisy.train.x - clean.train.x).std().item()
    assert residual == pytest.approx(0.1, rel=0.1)
    assert torch.equal(noisy.train.x, again.train.x)
    assert not torch.equal(noisy.train.x, other.train.x)


def test_adding_problem_follows_le_et_al():
    data = load_data(AddingDataConfig(name="adding", num_samples=2000, seq_len=20))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        "sequence", (20, 2), "regression", 1)
    x = torch.cat([s.x for _, s in data.splits()])
    y = torch.cat([s.y for _, s in data.splits()])
    values, marker = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert torch.all(marker.sum(1) == 2) and set(marker.unique().tolist()) == {0.0, 1.0}
    assert torch.all(marker[:, :10].sum(1) == 1) and torch.all(marker[:, 10:].sum(1) == 1)
    torch.testing.assert_close(y[:, 0], (values * marker).sum(1))


def test_adding_is_not_standardized_so_the_baseline_stays_0_167():
    data = load_data(AddingDataConfig(name="adding", num_samples=4000, seq_len=10))
    assert data.info.target_mean == () and data.info.target_std == ()
    y_train, y_test = data.train.y, data.test.y
    baseline = ((y_test - y_train.mean()) ** 2).mean().item()
    assert baseline == pytest.approx(1 / 6, abs=0.015)


@pytest.mark.parametrize("model", ["cnn", "rnn", "lstm", "gru", "mlp"])
def test_every_model_reads_sequences(model):
    cfg = config({"name": "adding", "num_samples": 20, "seq_len": 12}, model)
    data = load_data(cfg.data)
    net = build_model(cfg, data.info)
    assert net(data.train.x[:4]).shape == (4, 1)


def test_cnn_convolves_over_time():
    cfg = config({"name": "adding", "num_samples": 20, "seq_len": 12}, "cnn")
    net = build_model(cfg, load_data(cfg.data).info)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert convs and all(isinstance(m, nn.Conv1d) for m in convs)
    assert convs[0].in_channels == 2  # the two features per step are the channels
