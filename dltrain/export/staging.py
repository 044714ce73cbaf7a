"""Writing an export so that a failure leaves nothing half-written: the files are made in a
hidden folder beside their destination, checked there, and only then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def staged(out_dir: Path, owned: Iterable[str]) -> Iterator[Path]:
    """A fresh folder inside ``out_dir`` to write an export into.

    When the block succeeds, each file written there replaces the file of its name in
    ``out_dir`` (``os.replace``: atomic per file), and the ``owned`` names it did not write are
    removed (an ONNX export past 2 GB has a ``model.onnx.data`` beside it; a later, smaller one
    must not leave it behind). When the block fails, ``out_dir`` keeps what it held.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        yield tmp
        written = sorted(p for p in tmp.iterdir() if p.is_file())
        mode = 0o666 & ~_umask()  # some writers (safetensors) make their files 0600
        for path in written:
            os.chmod(path, mode)
            with open(path, "rb") as f:  # on disk before the rename makes it visible
                os.fsync(f.fileno())
        for path in written:
            os.replace(path, out_dir / path.name)
        for name in set(owned) - {p.name for p in written}:
            (out_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
