"""Running out of memory, said in one line: what was being allocated, how much, and what to lower.

Before the model is built, :func:`check_model_fits` weighs its parameters (built on the ``meta``
device, which allocates nothing) against the memory the device has free, and refuses a model
that cannot fit. An allocation that fails later, in a training step or an evaluation, is caught
by :func:`allocating` and becomes an :class:`OutOfMemory`.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from dltrain.atomic import human_bytes
from dltrain.errors import UserError

# torch's CPU allocator reports a failed allocation as a plain RuntimeError, so only its message
# tells it apart; tests/unit/test_faults.py pins these words against the real allocator.
# "can't allocate memory": posix_memalign failed (Linux, macOS); "not enough memory": Windows
CPU_ALLOCATOR_FAILURES = ("can't allocate memory", "not enough memory")
# the size, where the message gives it: "you tried to allocate 256000000000 bytes" (CPU),
# "Tried to allocate 2.00 GiB" (CUDA)
_TRIED = re.compile(r"tried to allocate ([\d.]+) ?(bytes|[KMGT]iB|B)", re.IGNORECASE)
_UNITS = {"bytes": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


class OutOfMemory(UserError):
    """An allocation the device could not serve. A fault of the machine for this config, not a
    typo: exit status 1."""

    exit_code = 1


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation: torch.OutOfMemoryError (CUDA, MPS) or the CPU
    allocator's RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        words in str(error) for words in CPU_ALLOCATOR_FAILURES)


def requested_bytes(error: BaseException) -> Optional[int]:
    """The size of the allocation that failed, when the allocator's message gives it."""
    match = _TRIED.search(str(error))
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@contextmanager
def allocating(what: str, lower: str, device: Optional[torch.device] = None) -> Iterator[None]:
    """Turn a failed allocation inside the block into one line: out of memory (on ``device``)
    ``what`` (``"in a training step ..."``), and ``lower``, the settings that would make it fit."""
    try:
        yield
    except OutOfMemory:
        raise
    except (RuntimeError, MemoryError) as e:
        if not (isinstance(e, MemoryError) or out_of_memory(e)):
            raise
        raise OutOfMemory(out_of_memory_message(what, lower, device, requested_bytes(e))) from None


def out_of_memory_message(what: str, lower: str, device: Optional[torch.device],
                          size: Optional[int]) -> str:
    where = f" on {device}" if device is not None else ""
    free = available_bytes(device) if device is not None else None
    sizes = ([f"{human_bytes(size)} requested"] if size else []) + \
        ([f"{human_bytes(free)} available"] if free is not None else [])
    return (f"out of memory{where} {what}"
            + (f" ({', '.join(sizes)})" if sizes else "") + f": lower {lower}")


# ---------------------------------------------------------------------------------------------
# before anything is allocated
def available_bytes(device: torch.device) -> Optional[int]:
    """Memory ``device`` has free now: MemAvailable from /proc/meminfo for the CPU (what the
    kernel can hand out without swapping), the free memory CUDA reports for a GPU; None where it
    cannot be read (MPS, a system without /proc)."""
    if device.type == "cpu":
        return _mem_available()
    if device.type == "cuda":
        try:
            return torch.cuda.mem_get_info(device)[0]
        except RuntimeError:
            return None
    return None


def _mem_available(meminfo: Path = Path("/proc/meminfo")) -> Optional[int]:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:  # no /proc (macOS): physical pages not in use
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parameter_bytes(build: Callable[[], nn.Module]) -> tuple[int, int]:
    """(parameters, bytes of parameters and buffers) of the module ``build()`` makes, built on
    the ``meta`` device: shapes and dtypes only, no memory, however large."""
    with torch.device("meta"):
        model = build()
    tensors = [*model.parameters(), *model.buffers()]
    count = sum(p.numel() for p in model.parameters())
    return count, sum(t.numel() * t.element_size() for t in tensors)


def check_model_fits(build: Callable[[], nn.Module], device: torch.device, lower: str) -> None:
    """Refuse a model whose parameters alone exceed the memory ``device`` has free: building it
    would fail in torch's allocator or, worse, push the machine into swap. Training needs more
    (gradients, the optimizer's state, activations); the check is only the certain part."""
    free = available_bytes(device)
    if free is None:
        return
    try:
        count, size = parameter_bytes(build)
    except Exception:  # a builder the meta device cannot run: the real build will tell
        return
    if size > free:
        raise OutOfMemory(
            f"the model's parameters need {human_bytes(size)} ({count:,} parameters) but {device} "
            f"has {human_bytes(free)} available (training needs about 4 times as much, for the "
            f"gradients and the optimizer's state): lower {lower}")
