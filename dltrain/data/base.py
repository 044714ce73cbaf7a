"""What every data set hands the builder and the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import torch

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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class Split:
    """One split held in memory: inputs and targets as tensors of equal length.

    ``transform`` runs on each batch (after it is on the device), e.g. uint8 → normalized float,
    so a data set can stay compact in memory and still be fed to the model as floats.
    """

    x: torch.Tensor
    y: torch.Tensor
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.transform)


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    info: DataInfo

    def splits(self) -> Sequence[Tuple[str, Split]]:
        return (("train", self.train), ("val", self.val), ("test", self.test))
