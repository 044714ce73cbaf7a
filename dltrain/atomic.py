"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A run killed at any moment leaves either the old file or the new one, never half of one. A write
that fills the disk leaves the old file too, removes its partial temporary file, and raises
:class:`DiskFull`, which says in one line what could not be written.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Optional

from dltrain.errors import UserError

# a full file system, and a user's spent disk quota: both mean "free some space"
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError):
    """A file could not be written because its disk is full. A fault of the machine, not of the
    user's input: exit status 1. ``advice`` (what is intact, how to go on) is set by whoever
    knows the run; the message reads it when it is shown."""

    exit_code = 1

    def __init__(self, path: Path, needed: Optional[int] = None, advice: str = "") -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.needed = needed
        self.free = free_bytes(self.path.parent)
        self.advice = advice

    def __str__(self) -> str:
        space = [f"it needs about {human_bytes(self.needed)}"] if self.needed else []
        if self.free is not None:
            space.append(f"{human_bytes(self.free)} free there")
        return (f"cannot write {self.path}: the disk is full"
                + (f" ({', '.join(space)})" if space else "")
                + (f"; {self.advice}" if self.advice else ""))


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` comes from a full disk: an OSError with ENOSPC or EDQUOT, itself or
    anywhere in its chain. torch.save reports a failed write of its file object as a
    RuntimeError (``unexpected pos``) whose context is the file's OSError: the type, not the
    message, says so."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in FULL_DISK_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
    return False


def atomic_write(path: Path, write: Callable[[IO[bytes]], None],
                 size: Optional[int] = None) -> None:
    """Write ``path`` through ``write(file)``, all or nothing. ``size``: about how many bytes it
    takes, for the message when the disk is full."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if disk_full(e):  # no room even for a folder or an empty file's entry
            raise DiskFull(path, size) from None
        raise
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception) and disk_full(e):
            raise DiskFull(path, size) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), size=len(data))


def free_bytes(folder: Path) -> Optional[int]:
    """Free space for an unprivileged user on ``folder``'s file system (its nearest existing
    parent); None when it cannot be read."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KB``: decimal units, as ``df -H`` and file managers show them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
