"""Batch transforms of uint8 images, run on the training device by the batcher.

Image sets stay in memory (or arrive from disk) as uint8 (N, C, H, W): four times smaller than
float32. Each batch becomes normalized floats on the device, and a training batch may be
augmented there first, with whole-batch tensor ops: no per-sample Python.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


class NormalizeImages:
    """uint8 (N, C, H, W) → float32 ``(x / 255 - mean) / std`` per channel, after ``augment``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self._constants: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}

    def with_augment(self, augment: Callable[[torch.Tensor], torch.Tensor]) -> "NormalizeImages":
        return NormalizeImages(self.mean, self.std, augment)

    def _scale_shift(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        # made once per device, not copied to the device with every batch
        if device not in self._constants:
            std = torch.tensor(self.std).view(-1, 1, 1)
            mean = torch.tensor(self.mean).view(-1, 1, 1)
            self._constants[device] = ((1 / (255 * std)).to(device), (-mean / std).to(device))
        return self._constants[device]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            x = self.augment(x)
        scale, shift = self._scale_shift(x.device)
        return torch.addcmul(shift, x.float(), scale)

    def __repr__(self) -> str:
        return f"NormalizeImages(mean={self.mean}, std={self.std}, augment={self.augment!r})"


class RandomCropFlip:
    """Random crop with ``padding`` zero pixels on each side, then a horizontal flip of half the
    images (the standard CIFAR-10 augmentation), for a whole batch in one gather.

    Random numbers come from the default generator of the batch's device, which
    ``trainer.seed`` seeds and checkpoints carry, so runs repeat and resume exactly.
    """

    def __init__(self, padding: int = 4) -> None:
        self.padding = padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, device = self.padding, x.device
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n, 1), device=device)
        dx = torch.randint(0, 2 * p + 1, (n, 1), device=device)
        cols = torch.arange(w, device=device)
        flip = torch.rand(n, 1, device=device) < 0.5
        # a flipped image reads its window right to left: the flip costs no second pass
        cols = torch.where(flip, cols.flip(0), cols) + dx  # (n, w)
        rows = torch.arange(h, device=device) + dy  # (n, h)
        batch = torch.arange(n, device=device).view(n, 1, 1, 1)
        channel = torch.arange(c, device=device).view(1, c, 1, 1)
        return padded[batch, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding})"
