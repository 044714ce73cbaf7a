"""MNIST, Fashion-MNIST and CIFAR-10, read by torchvision's own dataset classes.

The decoded images stay uint8 (N, C, H, W) tensors; each batch is normalized on the device with
the set's known per-channel statistics (and, for CIFAR-10 training batches, augmented there).
The official test set is the test split; ``data.val_fraction`` of the official training set,
drawn with ``data.split_seed`` and stratified by class, is the validation split.

Files live under ``data.root``: null means ``$DLTRAIN_DATA`` if set, else
``~/.cache/dltrain/data``. Without network, put the files there by hand (see the README, "Image sets");
dltrain unpacks the archives as torchvision's download would.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Tuple

import numpy as np
import torch

from dltrain.data import preprocess
from dltrain.data.base import DataInfo, DataSplits, Split
from dltrain.data.prepare import split_indices
from dltrain.data.registry import DATASETS
from dltrain.data.transforms import NormalizeImages, RandomCropFlip
from dltrain.errors import UserError
from dltrain.schema import TorchvisionDataConfig

ROOT_ENV = "DLTRAIN_DATA"
DEFAULT_ROOT = Path("~/.cache/dltrain/data")


def data_root(cfg: TorchvisionDataConfig) -> Path:
    """``data.root``, else ``$DLTRAIN_DATA``, else ``~/.cache/dltrain/data``."""
    root = cfg.root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    return Path(root).expanduser()


@dataclass(frozen=True)
class VisionSet:
    name: str
    class_name: str  # in torchvision.datasets
    # per-channel mean and std of the official training images, on the [0, 1] scale
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    where: Callable[[Any, Path], Tuple[Path, str]]  # the folder of the files, how to fill it
    unpack: Callable[[Any, Path], None]  # unpacks archives the user put there by hand

    def torchvision_class(self) -> Any:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.class_name)


def _mnist_where(cls: Any, root: Path) -> Tuple[Path, str]:
    files = ", ".join(name for name, _ in cls.resources)
    folder = root / cls.__name__ / "raw"
    return folder, f"put {files} (from {cls.mirrors[0]}) into {folder}"


def _mnist_unpack(cls: Any, root: Path) -> None:
    """torchvision reads the unpacked IDX files; its download unpacks the .gz files it fetches.
    Do the same for .gz files put in the raw folder by hand."""
    from torchvision.datasets.utils import extract_archive

    raw = root / cls.__name__ / "raw"
    for name, _ in cls.resources:
        archive, unpacked = raw / name, raw / Path(name).stem
        if archive.is_file() and not unpacked.is_file():
            try:
                extract_archive(str(archive), str(raw))
            except (OSError, EOFError) as e:
                unpacked.unlink(missing_ok=True)
                raise UserError(f"cannot unpack {archive}: {e}") from None


def _cifar_where(cls: Any, root: Path) -> Tuple[Path, str]:
    files = ", ".join([name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]])
    folder = root / cls.base_folder
    return folder, (f"put {cls.filename} (from {cls.url}) into {root}, or the files it holds "
                    f"({files}) into {folder}")


def _cifar_unpack(cls: Any, root: Path) -> None:
    from torchvision.datasets.utils import extract_archive

    archive = root / cls.filename
    if archive.is_file() and not (root / cls.base_folder).is_dir():
        try:
            extract_archive(str(archive), str(root))
        except (OSError, EOFError) as e:
            raise UserError(f"cannot unpack {archive}: {e}") from None


VISION_SETS = {
    # MNIST and Fashion-MNIST statistics as in torchvision's and PyTorch's examples; CIFAR-10's
    # std is that of the pixels (0.247, ...), not the often copied per-image 0.2023, ...
    "mnist": VisionSet("mnist", "MNIST", (0.1307,), (0.3081,), _mnist_where, _mnist_unpack),
    "fashion_mnist": VisionSet("fashion_mnist", "FashionMNIST", (0.2860,), (0.3530,),
                               _mnist_where, _mnist_unpack),
    "cifar10": VisionSet("cifar10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                         _cifar_where, _cifar_unpack),
}


def open_set(spec: VisionSet, root: Path, train: bool, download: bool) -> Any:
    """The torchvision dataset object, or a UserError saying where its files go."""
    cls = spec.torchvision_class()
    spec.unpack(cls, root)
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError:  # torchvision's "Dataset not found (or corrupted)"
        failure = "downloading is off (data.download=false)"
    except Exception as e:  # files that are there but cannot be parsed
        raise UserError(f"data={spec.name}: cannot read the {cls.__name__} files in {root}: "
                        f"{type(e).__name__}: {e} (delete them to download again)") from None
    if download:
        try:
            return cls(str(root), train=train, download=True)
        except Exception as e:  # no network, a proxy, a full disk: all end the same way
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failure = f"the download failed ({reason})"
    folder, how = spec.where(cls, root)
    raise UserError(
        f"data={spec.name}: the {cls.__name__} files are missing from {folder} (or incomplete) "
        f"and {failure}; {how}, "
        f"or set data.root (or ${ROOT_ENV}) to the folder that holds {folder.relative_to(root)}/"
    )


def _images(dataset: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) uint8 images and int64 labels of a torchvision MNIST or CIFAR object."""
    data = dataset.data
    if isinstance(data, np.ndarray):  # CIFAR keeps (N, H, W, C) numpy arrays
        x = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    else:  # MNIST keeps an (N, H, W) tensor
        x = data.unsqueeze(1).contiguous()
    y = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return x, y


def load_vision_set(cfg: TorchvisionDataConfig) -> DataSplits:
    spec = VISION_SETS[cfg.name]
    root = data_root(cfg)
    x, y = _images(open_set(spec, root, train=True, download=cfg.download))
    test_set = open_set(spec, root, train=False, download=cfg.download)
    x_test, y_test = _images(test_set)
    train, val, _ = split_indices(y.numpy(), dataclasses.replace(cfg, test_fraction=0.0),
                                  stratify=True)
    train, val = torch.from_numpy(train), torch.from_numpy(val)

    normalize = NormalizeImages(spec.mean, spec.std)
    train_transform = normalize.with_augment(RandomCropFlip(padding=4)) if cfg.augment else normalize
    info = DataInfo(name=cfg.name, kind="image", input_shape=tuple(x.shape[1:]),
                    task="classification", num_outputs=len(test_set.classes),
                    class_names=tuple(test_set.classes))
    info = preprocess.record(info, **preprocess.image(x.shape[-1], x.shape[1], spec.mean, spec.std))
    return DataSplits(
        train=Split(x[train], y[train], train_transform),
        val=Split(x[val], y[val], normalize),
        test=Split(x_test, y_test, normalize),
        info=info,
    )


for _name in VISION_SETS:
    DATASETS.register(_name)(load_vision_set)
