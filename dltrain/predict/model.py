"""A run folder's model, ready to predict: :func:`load_run` and :class:`Predictor`.

Everything comes from the checkpoint alone: the config builds the model, ``data_info`` gives its
input shape, classes, target scaling and preprocessing (:mod:`dltrain.data.preprocess`), and
the weights load with ``weights_only=True`` (a checkpoint that would run code is refused).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn

from dltrain import runs, schema
from dltrain.checkpoint import load_checkpoint
from dltrain.data.base import DataInfo
from dltrain.errors import UserError

CHECKPOINTS = {"best": runs.BEST, "last": runs.LAST}


def locate(run: Union[str, Path], checkpoint: str = "best") -> Path:
    """The checkpoint file of ``run`` (a run folder) named ``best`` or ``last``, or the file
    ``checkpoint`` itself (a path); a checkpoint file may also be given as ``run``."""
    run = Path(run)
    if checkpoint not in CHECKPOINTS:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"--checkpoint {checkpoint}: no such file (best, last or a path)")
        return path
    if run.is_file():
        return run
    if not run.is_dir():
        raise UserError(f"no run folder or checkpoint at {run}")
    path = run / runs.CHECKPOINTS / CHECKPOINTS[checkpoint]
    if not path.is_file():
        raise UserError(f"{run} has no {runs.CHECKPOINTS}/{CHECKPOINTS[checkpoint]}: "
                        "is it a run folder that trained at least one epoch?")
    return path


def info_from(data_info: Dict[str, Any], path: Path) -> DataInfo:
    """The DataInfo saved in a checkpoint; one from before dltrain recorded the preprocessing
    is refused with what to do."""
    fields = {f.name for f in dataclasses.fields(DataInfo)}
    info = DataInfo(**{k: v for k, v in data_info.items() if k in fields})
    info = dataclasses.replace(info, input_shape=tuple(info.input_shape),
                               class_names=tuple(info.class_names),
                               target_mean=tuple(info.target_mean), target_std=tuple(info.target_std))
    if not info.preprocess.get("version"):
        raise UserError(
            f"{path} was written before dltrain saved the preprocessing of its data (the "
            "standardization, text categories and image normalization that turn a raw input "
            "into the model's input), so it cannot be applied to new data; train it again with "
            "this version: dltrain replay RUN")
    return info


class Predictor(nn.Module):
    """The trained model from raw input to the answer: the training standardization in front,
    class probabilities (softmax) or values in the target's own units behind. What predict runs
    and what ONNX and torch.export save, so a consumer needs nothing but the graph."""

    def __init__(self, model: nn.Module, info: DataInfo) -> None:
        super().__init__()
        self.model = model
        self.classification = info.task == "classification"
        scale = info.preprocess.get("scale")
        self.scaled = scale is not None
        if scale is not None:
            self.register_buffer("mean", torch.tensor(scale["mean"], dtype=torch.float32))
            self.register_buffer("std", torch.tensor(scale["std"], dtype=torch.float32))
        if not self.classification:
            k = info.num_outputs
            self.register_buffer("target_mean", torch.tensor(info.target_mean or (0.0,) * k))
            self.register_buffer("target_std", torch.tensor(info.target_std or (1.0,) * k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaled:
            x = (x - self.mean) / self.std
        out = self.model(x).float()
        if self.classification:
            return torch.softmax(out, dim=1)
        return out * self.target_std + self.target_mean


class ClassPredictions(NamedTuple):
    index: np.ndarray  # (N,) the predicted class of each input
    probabilities: np.ndarray  # (N, classes)


@dataclass
class TrainedModel:
    """A run's model in eval mode, with its config and data facts (see :func:`load_run`)."""

    model: nn.Module
    config: schema.TrainConfig
    info: DataInfo
    checkpoint: Path
    device: torch.device
    epoch: Optional[int] = None

    def __post_init__(self) -> None:
        self.predictor = Predictor(self.model, self.info).to(self.device).eval()

    @property
    def class_names(self) -> tuple:
        return self.info.class_names

    @torch.inference_mode()
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Probabilities or target-unit values of raw inputs ``x`` (N, *input_shape)."""
        tensor = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=self.device)
        return self.predictor(tensor).cpu().numpy()

    def predict(self, inputs: Any, batch_size: int = 1024) -> Union[ClassPredictions, np.ndarray]:
        """Predictions for ``inputs``: what ``dltrain predict`` reads (a CSV, .npz or .npy file,
        an image file or folder), a NumPy array of raw inputs (N, *input_shape) or one input,
        or a list of images (paths or PIL images). Classification: :class:`ClassPredictions`;
        regression: the values (N, targets) in the target's own units."""
        from dltrain.predict.inputs import read_batches

        outs = [self.outputs(batch.x) for batch in read_batches(inputs, self.info, batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.info.num_outputs), np.float32)
        if self.info.task == "classification":
            return ClassPredictions(out.argmax(axis=1), out)
        return out


def load_run(run: Union[str, Path], checkpoint: str = "best", device: str = "cpu",
             option: str = "device") -> TrainedModel:
    """The model of a run folder (or of a checkpoint file), ready to predict.

    ``checkpoint``: ``best`` (default), ``last`` or a path. ``device``: ``cpu`` (default),
    ``auto``, ``cuda``, ``cuda:N`` or ``mps``. ``option``: how messages name the device setting.
    """
    from dltrain.device import resolve_device
    from dltrain.models import build_model

    if not schema.DEVICE_PATTERN.match(device):
        raise UserError(f"{option}={device} is not allowed: auto, cpu, cuda, cuda:N or mps")
    path = locate(run, checkpoint)
    ckpt = load_checkpoint(path)
    if "config" not in ckpt or "model" not in ckpt or "data_info" not in ckpt:
        raise UserError(f"{path} is not a dltrain checkpoint (no config, model or data_info in it)")
    config = schema.load_config(ckpt["config"])
    info = info_from(ckpt["data_info"], path)
    target = resolve_device(device, option=option)
    model = build_model(config, info)
    model.load_state_dict(ckpt["model"])
    return TrainedModel(model.to(target).eval(), config, info, path, target, ckpt.get("epoch"))
