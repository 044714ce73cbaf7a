"""Checkpoints are data: a dict of state dicts and plain values, written atomically and loaded
with ``weights_only=True`` so that a checkpoint file can never run code."""

from __future__ import annotations

import pickle
import platform
from pathlib import Path
from typing import Any, Dict, List

import torch

from dltrain.atomic import atomic_write
from dltrain.errors import UserError
from dltrain.version import __version__


def versions() -> Dict[str, str]:
    return {"dltrain": __version__, "torch": str(torch.__version__),
            "python": platform.python_version()}


def save_checkpoint(path: Path, checkpoint: Dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically; a full disk raises
    :class:`~dltrain.atomic.DiskFull` with the space it needs, the old file left as it was."""
    atomic_write(path, lambda f: torch.save(checkpoint, f), size=tensor_bytes(checkpoint))


def tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists, tuples): about the size of its
    torch.save file, whose plain values add little."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused the file, or could not read it as a pickle; which one, torch's own
        # listing of what the file names (read, never run) tells
        unsafe = unsafe_globals(path)
        if not unsafe:
            raise UserError(f"cannot read checkpoint {path}: it is not a PyTorch checkpoint file") from None
        # weights_only refuses anything but tensors and plain containers: a file that needs more
        # was not written by dltrain, and loading it fully could run arbitrary code
        raise UserError(
            f"refusing to load {path}: it holds objects other than tensors and plain values, "
            f"so loading it could run code (it needs {', '.join(unsafe)})"
        ) from None
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        # torch.save writes a zip archive: one that torch cannot read was cut short (a full
        # disk, a copy that stopped) or changed; anything else never was a checkpoint
        what = ("the file is damaged or truncated" if _is_zip(path)
                else "it is not a PyTorch checkpoint file")
        raise UserError(f"cannot read checkpoint {path}: {what} "
                        f"({type(e).__name__}: {_first_sentence(e)})") from None


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _first_sentence(error: BaseException) -> str:
    """torch's messages go on with advice over several sentences; the first says what failed."""
    text = " ".join(str(error).split())
    end = text.find(". ")
    return text if end < 0 else text[:end]


def unsafe_globals(path: Path) -> List[str]:
    """The classes and functions a torch.save file names that ``weights_only`` does not allow,
    listed by torch without running the file. Empty for a file torch cannot list: a plain pickle,
    torch's legacy format, a damaged file, or a torch older than 2.5 (no listing)."""
    listing = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if listing is None:
        return []
    try:
        return sorted(listing(str(path)))
    except Exception:  # not a zip archive written by torch.save
        return []
