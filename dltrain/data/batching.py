"""Batches of a split: in memory by shuffling indices and slicing tensors, from disk through a
DataLoader.

In memory there is no DataLoader and no per-sample Python: a batch is one index_select on tensors
that already sit on the training device. A :class:`StreamSplit` is read by worker processes in
the same shuffled order, into pinned memory when the device is CUDA, and each batch is copied to
the device as it arrives, without waiting for the copy. Its DataLoader is made once and its
workers persist from one epoch to the next.
"""

from __future__ import annotations

import traceback
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import torch

from dltrain.data.base import AnySplit, StreamSplit
from dltrain.errors import UserError

Batch = Tuple[torch.Tensor, torch.Tensor]


def num_batches(n: int, batch_size: int, *, min_last: int = 1) -> int:
    """The batches :func:`iterate` yields for ``n`` samples: per-step schedules count these."""
    return len(batch_bounds(n, batch_size, min_last))


def batch_bounds(n: int, batch_size: int, min_last: int = 1) -> List[Tuple[int, int]]:
    """``(start, stop)`` of each batch of ``n`` samples; a last batch smaller than ``min_last``
    is dropped (batch norm cannot train on one sample, and under DDP every process needs at
    least one sample of every step's batch)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_last:
        bounds.pop()
    return bounds


def shard_of(start: int, stop: int, rank: int, world_size: int) -> Tuple[int, int]:
    """Process ``rank``'s part of the batch ``[start, stop)``: contiguous, sizes differing by at
    most one (as ``torch.tensor_split``), so the processes together take the whole batch."""
    size, extra = divmod(stop - start, world_size)
    first = start + rank * size + min(rank, extra)
    return first, first + size + (rank < extra)


def iterate(
    split: AnySplit,
    batch_size: int,
    *,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    min_last: int = 1,
    skip: int = 0,
    shard: Tuple[int, int] = (0, 1),
    limit: Optional[int] = None,
) -> Iterator[Batch]:
    """Yield ``(x, y)`` batches of ``split``, on the split's device, transformed.

    ``min_last``: see :func:`batch_bounds`. ``limit`` keeps the first batches only
    (trainer.limit_batches). ``skip`` leaves out the first batches (an epoch resumed where it
    was interrupted). ``shard=(rank, world_size)`` yields only this process's
    part of each batch (:func:`shard_of`); every process draws the same order, so together they
    see each batch exactly as one process would. An empty part is not yielded.
    """
    n = len(split)
    # the permutation is drawn on the CPU generator so the order depends on the seed only,
    # not on the device, on whether the split is streamed or on the number of processes
    order = torch.randperm(n, generator=generator) if shuffle else None
    bounds = [shard_of(start, stop, *shard)
              for start, stop in batch_bounds(n, batch_size, min_last)[:limit][skip:]]
    bounds = [(start, stop) for start, stop in bounds if stop > start]
    if isinstance(split, StreamSplit):
        yield from _stream(split, bounds, order)
        return
    if order is not None:
        order = order.to(split.x.device, non_blocking=True)  # n indices once per epoch
    for start, stop in bounds:
        if order is not None:
            idx = order[start:stop]
            x, y = split.x.index_select(0, idx), split.y.index_select(0, idx)
        else:
            x, y = split.x[start:stop], split.y[start:stop]
        if split.transform is not None:
            x = split.transform(x)
        yield x, y


class EpochBatches:
    """The batch sampler of a kept DataLoader: each epoch sets its batches before iterating.
    (A DataLoader's sampler cannot be replaced once it is made; its iterator asks the sampler
    for a new iterator at the start of every epoch, in this process, and sends the indices to
    the workers.)"""

    def __init__(self) -> None:
        self.batches: List[List[int]] = []

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _stream(split: StreamSplit, bounds: List[Tuple[int, int]],
            order: Optional[torch.Tensor]) -> Iterator[Batch]:
    indices = order.tolist() if order is not None else range(len(split))
    loader = split.loader or _make_loader(split)
    loader.batch_sampler.batches = [list(indices[start:stop]) for start, stop in bounds]
    try:
        for x, y in read_loader(loader):
            x = x.to(split.device, non_blocking=True)
            y = y.to(split.device, non_blocking=True)
            if split.transform is not None:
                x = split.transform(x)
            yield x, y
    except UserError:
        split.loader = None  # a file could not be read: let its workers go with the loader
        raise


def _make_loader(split: StreamSplit) -> Any:
    from torch.utils.data import DataLoader

    # The loader draws its workers' base seed from its own fixed generator, when its workers
    # start: not from the shuffle generator, whose draws must not depend on whether the workers
    # were started in this epoch (a resumed run starts them in the epoch it resumes), and not
    # from the global RNG, which a mid-epoch resume restores to after that draw. The workers
    # only decode files: dltrain's data sets draw no random numbers there (augmentation runs on
    # the device), so persistent workers that started in another epoch read the same batches.
    split.loader = DataLoader(
        split.dataset, batch_sampler=EpochBatches(), num_workers=split.num_workers,
        pin_memory=split.device.type == "cuda", persistent_workers=split.num_workers > 0,
        generator=torch.Generator().manual_seed(0))
    return split.loader


def read_loader(loader: Iterable[Any]) -> Iterator[Any]:
    """The batches of a DataLoader. A UserError raised in a worker process (a file that cannot
    be read) reaches this process re-raised with the worker's traceback as its message; it is
    raised again here with only its original message."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except UserError as e:
            message, kind = _worker_message(e), type(e)
            if message is None:  # raised in this process: already the user's message
                raise
            # torch's re-raise leaves the error in a reference cycle with its traceback, whose
            # frames hold the iterator: clear them so the workers stop when the iterator goes,
            # not at some later garbage collection (which then waits seconds for each worker)
            traceback.clear_frames(e.__traceback__)
        else:
            yield batch
            continue
        del iterator
        raise kind(message)  # outside the except clause: not chained to the worker's error


def _worker_message(error: BaseException) -> Optional[str]:
    """The message ``error`` had in a DataLoader worker, or ``None`` if it was not re-raised from
    one. torch keeps only the type and the formatted traceback of a worker's exception
    (``torch._utils.ExceptionWrapper``), and re-raises the type with the message "Caught <type>
    in DataLoader worker process N." and "Original " + that traceback, whose last exception line
    is "<module>.<type>: <message>". tests/unit/test_library_messages.py pins this format
    against the installed torch."""
    text, kind = str(error), type(error)
    if not text.startswith(f"Caught {kind.__name__} "):
        return None
    # the exception line starts a line (a traceback's frames are indented) and names the type as
    # traceback names it here; the last one is the error itself, any before it errors it handled
    named = traceback.format_exception_only(kind, kind("\0"))[-1]
    header = "\n" + named[:named.index("\0")]
    at = text.rfind(header)
    return text[at + len(header):].rstrip("\n") if at >= 0 else None
