"""Fixtures of the unit tests; the plain helpers live in unit_support.py."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# the helpers module beside this file, importable whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))
import unit_support  # noqa: E402

# The models here are tiny: a second intra-op thread only adds spin-waiting, which turns into
# large stalls when the cores are shared (CI runners, parallel jobs).
torch.set_num_threads(1)


@pytest.fixture
def raw_config():
    return unit_support.raw


@pytest.fixture
def make_config():
    return unit_support.make_config


@pytest.fixture(autouse=True)
def restore_global_torch_state():
    """build_job seeds every generator and switches deterministic algorithms on: undo it, so no
    test depends on the ones before it."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(torch_rng)
    np.random.set_state(np_rng)
    random.setstate(py_rng)
