"""What every data set hands the builder and the trainer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

# image: (C, H, W); sequence: (T, F); table: (F,)
KINDS = ("image", "sequence", "table")


@dataclass(frozen=True)
class DataInfo:
    """The facts the builder and the loss are checked against."""

    name: str
    kind: str
    input_shape: Tuple[int, ...]
    task: str  # classification | regression
    num_outputs: int  # classes for classification, targets for regression
    class_names: Tuple[str, ...] = ()
    # regression targets are standardized for training; these undo it for reporting
    target_mean: Tuple[float, ...] = ()
    target_std: Tuple[float, ...] = ()
    # how a raw input becomes the model's input (dltrain.data.preprocess): plain data, saved in
    # every checkpoint; empty in checkpoints written before dltrain recorded it
    preprocess: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class Split:
    """One split held in memory: inputs and targets as tensors of equal length.

    ``transform`` runs on each batch (after it is on the device), e.g. uint8 → normalized float,
    so a data set can stay compact in memory and still be fed to the model as floats. Each split
    has its own: the training split's may also augment (only training reads the training split;
    validation and test batches come from splits whose transform does not augment).
    """

    x: torch.Tensor
    y: torch.Tensor
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.transform)


@dataclass
class StreamSplit:
    """One split read from disk batch by batch, for data too large to hold in memory.

    ``dataset`` is a map-style dataset of ``(x, y)`` samples (x a tensor, y a class index);
    :func:`dltrain.data.batching.iterate` reads it through a DataLoader with ``num_workers``
    worker processes and copies each batch to ``device`` as it comes, then runs ``transform``
    there. ``to(device)`` moves nothing: it records where the batches go.
    """

    dataset: Dataset
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, repr=False)
    num_workers: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # the DataLoader that reads this split: made on first use by dltrain.data.batching and kept
    # for every epoch after, so that its worker processes persist. ``to`` makes a new split
    # without it (its pin_memory depends on the device)
    loader: Any = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def to(self, device: torch.device) -> "StreamSplit":
        return dataclasses.replace(self, device=torch.device(device))


AnySplit = Union[Split, StreamSplit]


@dataclass
class DataSplits:
    train: AnySplit
    val: AnySplit
    test: AnySplit
    info: DataInfo

    def splits(self) -> Sequence[Tuple[str, AnySplit]]:
        return (("train", self.train), ("val", self.val), ("test", self.test))

    def to(self, device: torch.device) -> "DataSplits":
        """Every split on ``device`` (in-memory tensors move; streamed splits record it)."""
        return dataclasses.replace(self, train=self.train.to(device), val=self.val.to(device),
                                   test=self.test.to(device))
