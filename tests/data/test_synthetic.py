"""data=synthetic: any shape, fixed by its seed, and learnable (not noise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data import load_data
from dltrain.schema import SyntheticDataConfig


@pytest.mark.parametrize("shape, kind", [([12], "table"), ([10, 3], "sequence"),
                                         ([1, 8, 8], "image")])
def test_shape_gives_the_kind(shape, kind):
    data = load_data(SyntheticDataConfig(name="synthetic", shape=shape, num_samples=200,
                                         num_classes=4))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        kind, tuple(shape), "classification", 4)
    assert sum(len(s) for _, s in data.splits()) == 200
    assert np.bincount(data.train.y.numpy(), minlength=4).min() > 0


def test_fixed_by_seed():
    def x(seed):
        return load_data(SyntheticDataConfig(name="synthetic", shape=[5], num_samples=50,
                                             seed=seed)).train.x

    assert torch.equal(x(0), x(0)) and not torch.equal(x(0), x(1))


def test_classes_are_learnable_from_the_training_split():
    """Nearest class mean of the training split classifies the test split far above chance."""
    data = load_data(SyntheticDataConfig(name="synthetic", shape=[1, 12, 12], num_samples=1000))
    x, y = data.train.x.flatten(1), data.train.y
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    predicted = torch.cdist(data.test.x.flatten(1), means).argmin(1)
    accuracy = (predicted == data.test.y).float().mean().item()
    assert accuracy > 0.5  # chance: 0.1
