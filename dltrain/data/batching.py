"""Batches of an in-memory split, by shuffling indices and slicing tensors.

No DataLoader and no per-sample Python: a batch is one index_select on tensors that already sit
on the training device.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch

from dltrain.data.base import Split


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def iterate(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    drop_singleton: bool = False,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``split``.

    ``drop_singleton`` drops a last batch of one sample: batch norm cannot train on it.
    """
    n = len(split)
    if shuffle:
        # the permutation is drawn on the CPU generator so the order depends on the seed only,
        # not on the device; moving n indices once per epoch is negligible
        order = torch.randperm(n, generator=generator).to(split.x.device, non_blocking=True)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_singleton and stop - start == 1 and n > 1:
            break
        if shuffle:
            idx = order[start:stop]
            x, y = split.x.index_select(0, idx), split.y.index_select(0, idx)
        else:
            x, y = split.x[start:stop], split.y[start:stop]
        if split.transform is not None:
            x = split.transform(x)
        yield x, y
