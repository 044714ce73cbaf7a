"""Options of the ``data`` group: one dataclass per kind of source, each data set declared once
with the task it has (where the task does not depend on the user's files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from dltrain.schema.base import FIXED_TASKS, PATH, Checker, Options, option

TASKS = ("classification", "regression")


@option("data", "digits", task="classification")
@option("data", "diabetes", task="regression")
@dataclass
class DataConfig(Options):
    name: str = MISSING
    # classification | regression | auto (decided by the data set)
    task: str = "auto"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # the split is fixed by its own seed, so changing trainer.seed never reshuffles the test set
    split_seed: int = 0

    def check(self, v: Checker) -> None:
        v.one_of("task", self.task, ("auto",) + TASKS)
        v.check(0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "must be in (0, 1)")
        v.check(0 < self.test_fraction < 1, "test_fraction", self.test_fraction, "must be in (0, 1)")
        v.check(self.val_fraction + self.test_fraction < 1, "val_fraction + data.test_fraction",
                self.val_fraction + self.test_fraction, "must leave some data for training (< 1)")
        fixed = FIXED_TASKS.get(self.name)
        if fixed and self.task not in ("auto", fixed):
            v.fail(f"data.task={self.task!r} is not allowed: data={self.name} is a {fixed} set")


@option("data", "mnist", "fashion_mnist", "cifar10", task="classification")
@dataclass
class TorchvisionDataConfig(DataConfig):
    """mnist, fashion_mnist, cifar10: the official test set is the test split (test_fraction is
    not used); val_fraction of the official training set is held out for validation."""

    task: str = "classification"
    # null = $DLTRAIN_DATA, else ~/.cache/dltrain/data
    root: Optional[str] = field(default=None, metadata=PATH)
    download: bool = True
    augment: bool = False  # random crop with padding + horizontal flip, on whole batches
    val_fraction: float = 0.1

    def check(self, v: Checker) -> None:
        super().check(v)
        if self.augment and self.name != "cifar10":
            v.fail(f"data.augment=true is not allowed: augmentation is for cifar10, not {self.name}")


@dataclass
class SequenceDataConfig(DataConfig):
    task: str = "regression"
    num_samples: int = 10000
    seq_len: int = 100

    def check(self, v: Checker) -> None:
        super().check(v)
        v.at_least("seq_len", self.seq_len, 2)
        v.at_least("num_samples", self.num_samples, 10)


@option("data", "sine", task="regression")
@dataclass
class SineDataConfig(SequenceDataConfig):
    """Forecast the next ``horizon`` values of noisy sine waves from a window of ``seq_len``."""

    num_samples: int = 4000
    seq_len: int = 50
    horizon: int = 1
    noise: float = 0.05

    def check(self, v: Checker) -> None:
        super().check(v)
        v.at_least("horizon", self.horizon, 1)
        v.at_least("noise", self.noise, 0)


@option("data", "adding", task="regression")
@dataclass
class AddingDataConfig(SequenceDataConfig):
    """The adding problem: the sum of the two marked values of a length-``seq_len`` sequence."""


@dataclass
class FileDataConfig(DataConfig):
    path: str = field(default=MISSING, metadata=PATH)

    def check(self, v: Checker) -> None:
        super().check(v)
        v.check(bool(self.path), "path", self.path, f"data={self.name} needs data.path=FILE")


# spellings of a CSV delimiter that are awkward to type on a command line
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@option("data", "csv")
@dataclass
class CSVDataConfig(FileDataConfig):
    target: str = MISSING  # the column to predict; every other column is a feature
    # auto: the one of , ; tab | that splits the header and the first rows into the same number
    # of columns; or one character, or its name (comma, semicolon, tab, pipe: no shell quoting)
    delimiter: str = "auto"

    def check(self, v: Checker) -> None:
        super().check(v)
        v.check(bool(self.target), "target", self.target, "data=csv needs data.target=COLUMN")
        v.check(self.delimiter == "auto" or self.delimiter in DELIMITER_NAMES
                or len(self.delimiter) == 1, "delimiter", self.delimiter,
                "auto, one character, or comma, semicolon, tab or pipe")


@option("data", "image_folder", task="classification")
@dataclass
class ImageFolderDataConfig(FileDataConfig):
    task: str = "classification"
    # one sub-folder per class (data.path)
    image_size: int = 32
    grayscale: bool = False
    # decode everything once into memory when the uint8 tensors fit in this many MiB,
    # else stream from disk with a DataLoader
    max_memory_mb: int = 2048
    num_workers: int = 2

    def check(self, v: Checker) -> None:
        super().check(v)
        v.at_least("image_size", self.image_size, 4)
        v.at_least("max_memory_mb", self.max_memory_mb, 0)
        v.at_least("num_workers", self.num_workers, 0)


@option("data", "npz")
@dataclass
class NpzDataConfig(FileDataConfig):
    """Arrays x and y in data.path; optional x_val, y_val, x_test, y_test."""


@option("data", "synthetic", task="classification")
@dataclass
class SyntheticDataConfig(DataConfig):
    """Learnable classification data of any shape, for benchmarks and quick checks."""

    task: str = "classification"
    shape: List[int] = field(default_factory=lambda: [1, 28, 28])
    num_samples: int = 4096
    num_classes: int = 10
    seed: int = 0

    def check(self, v: Checker) -> None:
        super().check(v)
        v.check(1 <= len(self.shape) <= 3 and all(n > 0 for n in self.shape), "shape", self.shape,
                "1 to 3 positive sizes: [F] (table), [T, F] (sequence) or [C, H, W] (image)")
        v.at_least("num_samples", self.num_samples, 10)
        v.at_least("num_classes", self.num_classes, 2)
