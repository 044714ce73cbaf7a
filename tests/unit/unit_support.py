"""Helpers shared by the unit tests (a uniquely named module: tests/cli has its own)."""

from __future__ import annotations

import copy
from typing import Any, Dict

from dltrain.data.base import DataInfo
from dltrain.schema import GROUPS, TrainConfig, load_config

# The smallest config that validates: a one-layer MLP on digits, trained for one epoch on the CPU.
BASE: Dict[str, Any] = {
    "model": {"name": "mlp", "hidden_sizes": [8]},
    "activation": {"name": "relu"},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
    "data": {"name": "digits"},
    "regularization": {},
    "trainer": {"epochs": 1, "batch_size": 32, "device": "cpu", "progress": "none"},
}

# image (C, H, W), sequence (T, F), table (F,)
INPUT_SHAPES = {"image": (1, 8, 8), "sequence": (12, 3), "table": (5,)}
NUM_OUTPUTS = {"classification": 4, "regression": 2}


def raw(**groups: Any) -> Dict[str, Any]:
    """BASE with ``groups`` applied: an option group (model, optim, ...) is replaced whole,
    regularization and trainer are updated key by key."""
    out = copy.deepcopy(BASE)
    for key, value in groups.items():
        if key in GROUPS or key not in out or not isinstance(value, dict):
            out[key] = copy.deepcopy(value)
        else:
            out[key].update(copy.deepcopy(value))
    return out


def make_config(**groups: Any) -> TrainConfig:
    return load_config(raw(**groups))


def data_info(kind: str, task: str) -> DataInfo:
    return DataInfo(name=f"fake-{kind}", kind=kind, input_shape=INPUT_SHAPES[kind], task=task,
                    num_outputs=NUM_OUTPUTS[task])
