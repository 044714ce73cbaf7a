"""Fixtures of the data-source tests; the file writers live in data_support.py."""

from __future__ import annotations

import pytest
import torch

import data_support

# tiny models on tiny files: a second intra-op thread only adds spin-waiting on shared cores
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_data_root_from_the_environment(monkeypatch):
    """$DLTRAIN_DATA of the machine running the tests must not change what a test reads."""
    monkeypatch.delenv("DLTRAIN_DATA", raising=False)


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    """torchvision's CIFAR10 checks each file's md5 against the real data set's; fake files
    cannot match. Replace only the md5 comparison: the existence checks, the unpickling and the
    rest of torchvision's code path stay real."""
    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "check_md5", lambda *args, **kwargs: True)


@pytest.fixture
def train():
    return data_support.train
