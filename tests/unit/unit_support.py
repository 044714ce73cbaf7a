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

# small widths keep the model cases fast; a model missing here is built with its schema defaults
TINY = {
    "mlp": {"hidden_sizes": [6, 5]},
    "cnn": {"channels": [3, 4], "hidden_size": 6},
    "rnn": {"hidden_size": 6},
    "lstm": {"hidden_size": 6},
    "gru": {"hidden_size": 6},
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


class StopAt:
    """A stop flag (as a signal handler raises it) that the loop sees after optimizer step
    ``step``: a callback and the ``stop`` argument of ``fit`` at once."""

    def __init__(self, step: int) -> None:
        self.step, self.requested = step, 0

    def on_epoch_start(self, job: Any, n_batches: int) -> None:
        pass

    def on_step(self, job: Any, batch: int, running: Any) -> None:
        if job.state.step == self.step:
            self.requested = 15  # SIGTERM

    def on_epoch_end(self, job: Any, row: Any, improved: bool) -> None:
        pass


def straight_and_resumed(config: TrainConfig, stop_at: Any, folder: Any) -> tuple:
    """Two jobs of ``config``: one trained without a stop, one stopped after optimizer step
    ``stop_at(steps of the first)``, checkpointed into ``folder``, rebuilt from the checkpoint
    and trained on."""
    import pytest

    from dltrain.checkpoint import load_checkpoint, save_checkpoint
    from dltrain.train.loop import TrainingInterrupted, fit
    from dltrain.train.run import build_job, make_checkpoint, restore

    straight = build_job(config)
    fit(straight)
    first = build_job(config)
    stop = StopAt(stop_at(straight.state.step))
    with pytest.raises(TrainingInterrupted):
        fit(first, [stop], stop)
    save_checkpoint(folder / "last.pt", make_checkpoint(first))
    resumed = build_job(config)
    restore(resumed, load_checkpoint(folder / "last.pt"))
    fit(resumed)
    return straight, resumed
