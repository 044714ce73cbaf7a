"""Fixtures of the unit tests; the plain helpers live in unit_support.py."""

from __future__ import annotations

import sys
from pathlib import Path

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
