"""Images of the user's in torchvision's ImageFolder layout: ``DIR/<class>/<image>``.

Every image is resized (shorter side to ``data.image_size``, then a centred square crop) and
converted to RGB or, with ``data.grayscale``, to one channel. When the uint8 tensors of the whole
folder fit in ``data.max_memory_mb`` they are decoded once, by ``data.num_workers`` worker
processes, and kept in memory like the built-in sets; otherwise each split is streamed from
disk through a DataLoader every epoch (:class:`StreamSplit`). The split is stratified by class
and fixed by ``data.split_seed``; per-channel normalization is fitted on training images.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, List, Sequence, Tuple

import numpy as np
import torch

from dltrain.data import preprocess
from dltrain.data.base import DataInfo, DataSplits, Split, StreamSplit
from dltrain.data.batching import read_loader
from dltrain.data.prepare import split_indices
from dltrain.data.registry import DATASETS
from dltrain.data.transforms import NormalizeImages
from dltrain.errors import UserError
from dltrain.schema import ImageFolderDataConfig

# normalization statistics of a streamed set come from at most this many training images
STATS_SAMPLES = 2000
DECODE_BATCH = 256


def decode(path: str, size: int, grayscale: bool) -> torch.Tensor:
    """One image file → uint8 (C, size, size). The loader torchvision's ImageFolder calls."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = fit(image, size, grayscale)
    except UnidentifiedImageError:  # PIL's message repeats the path
        raise UserError(f"cannot read image {path}: not an image file in a format PIL reads "
                        "(or a damaged one)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError and truncated files are OSErrors
        raise UserError(f"cannot read image {path}: {e}") from None
    return torch.from_numpy(array)


def fit(image: Any, size: int, grayscale: bool) -> np.ndarray:
    """A PIL image → uint8 (C, size, size): RGB or one grey channel, the shorter side resized to
    ``size`` and the centre cropped to a square."""
    from PIL import Image, ImageOps

    image = image.convert("L" if grayscale else "RGB")
    image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)  # a copy: PIL's buffer is read-only
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def open_folder(cfg: ImageFolderDataConfig) -> Any:
    """torchvision's ImageFolder over ``data.path``, decoding with :func:`decode`."""
    from torchvision.datasets import ImageFolder

    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise UserError(f"data.path={root} {what}; data=image_folder needs a folder with one "
                        "sub-folder of images per class")
    loader = functools.partial(decode, size=cfg.image_size, grayscale=cfg.grayscale)
    try:
        return ImageFolder(str(root), loader=loader)
    except FileNotFoundError as e:  # no class folders, or a class folder without images
        raise UserError(f"data.path={root}: {e} (data=image_folder expects DIR/<class>/<image>, "
                        "one sub-folder of images per class)") from None
    except OSError as e:  # a folder that cannot be listed
        raise UserError(f"data.path={root}: cannot read the folder: {e}") from None


def decode_all(dataset: Any, indices: Sequence[int], num_workers: int,
               shape: Tuple[int, ...]) -> torch.Tensor:
    """The images at ``indices``, decoded by ``num_workers`` processes, as one uint8 tensor."""
    from torch.utils.data import DataLoader, Subset

    if len(indices) == 0:
        return torch.empty((0, *shape), dtype=torch.uint8)
    subset = Subset(dataset, list(indices))
    loader = DataLoader(subset, batch_size=DECODE_BATCH, num_workers=num_workers)
    return torch.cat([x for x, _ in read_loader(loader)])


def channel_stats(images: torch.Tensor) -> Tuple[List[float], List[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images on the [0, 1] scale."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(DECODE_BATCH):  # float64 copies of a chunk, not of the whole set
        chunk = chunk.to(torch.float64) / 255
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std[std < 1e-6] = 1.0  # a constant channel
    return mean.tolist(), std.tolist()


@DATASETS.register("image_folder")
def load_image_folder(cfg: ImageFolderDataConfig) -> DataSplits:
    folder = open_folder(cfg)
    y = np.asarray(folder.targets, dtype=np.int64)
    channels = 1 if cfg.grayscale else 3
    shape = (channels, cfg.image_size, cfg.image_size)
    parts = split_indices(y, cfg, stratify=True)
    info = DataInfo(name="image_folder", kind="image", input_shape=shape, task="classification",
                    num_outputs=len(folder.classes), class_names=tuple(folder.classes))

    if len(parts[0]) == 0:
        raise UserError(f"data.path={cfg.path}: {len(y)} images leave none for training with "
                        f"data.val_fraction={cfg.val_fraction} and "
                        f"data.test_fraction={cfg.test_fraction}")

    size_mb = len(y) * int(np.prod(shape)) / 2**20
    if size_mb <= cfg.max_memory_mb:
        # each split decoded on its own: no second copy of the whole folder in memory
        images = [decode_all(folder, ix, cfg.num_workers, shape) for ix in parts]
        normalize = NormalizeImages(*channel_stats(images[0]))
        splits: List[Any] = [Split(x, torch.from_numpy(y[ix]), normalize) for x, ix in zip(images, parts)]
    else:
        from torch.utils.data import Subset

        rng = np.random.default_rng(cfg.split_seed)
        sample = rng.choice(parts[0], size=min(STATS_SAMPLES, len(parts[0])), replace=False)
        stats = channel_stats(decode_all(folder, sample, cfg.num_workers, shape))
        normalize = NormalizeImages(*stats)
        splits = [StreamSplit(Subset(folder, ix.tolist()), normalize, cfg.num_workers)
                  for ix in parts]
    info = preprocess.record(info, **preprocess.image(cfg.image_size, channels, normalize.mean,
                                                      normalize.std))
    return DataSplits(*splits, info=info)
