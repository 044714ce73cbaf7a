"""What recording a data fingerprint costs on a large image folder (issue 7 item 11).

Builds a folder of random "images" (``--mb`` MiB in ``--files`` files, 1 GiB in 1000 by default)
in a temporary folder, then times, each cold (the folder's pages evicted from the page cache with
posix_fadvise, where the system has it) and warm (median of ``--repeat`` runs):

* ``fingerprint()`` of an ``image_folder`` config: what eval, replay and resume pay;
* reading every byte, as ``cat`` would: the least any content check could cost;
* sha256 of every file's contents: the alternative that :func:`dltrain.fingerprint.folder_entry`
  does not take.

    python scripts/bench_fingerprint.py [--mb 1024] [--files 1000] [--dir /big/disk]

The folder is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, List

from dltrain import fingerprint as fp
from dltrain.schema import ImageFolderDataConfig

CLASSES = 10


def build(root: Path, mb: int, files: int) -> List[Path]:
    size = mb * 2**20 // files
    paths = []
    for i in range(files):
        path = root / f"class_{i % CLASSES}" / f"{i:06d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    if hasattr(os, "sync"):
        os.sync()  # dirty pages cannot be evicted: written back, the cold runs are cold
    return paths


def evict(paths: List[Path]) -> bool:
    """Drop these files' pages from the page cache (only theirs); False where unsupported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def read_all(paths: List[Path]) -> None:
    buffer = bytearray(fp.CHUNK)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


def hash_all(paths: List[Path]) -> None:
    for path in paths:
        fp.file_sha256(str(path))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the folder in MiB")
    parser.add_argument("--files", type=int, default=1000, help="number of files")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs (the median is shown)")
    parser.add_argument("--dir", default=None, help="where to build it (default: the temp dir)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dltrain-bench-fp-", dir=args.dir))
    try:
        start = time.perf_counter()
        paths = build(root, args.mb, args.files)
        total = sum(p.stat().st_size for p in paths)
        print(f"built {len(paths)} files, {total / 1e6:,.0f} MB in {root} "
              f"({time.perf_counter() - start:.1f} s)")
        cfg = ImageFolderDataConfig(name="image_folder", path=str(root))
        candidates = {
            "fingerprint() (list + sizes)": lambda: fp.fingerprint(cfg),
            "read every byte (cat)": lambda: read_all(paths),
            "sha256 of every file": lambda: hash_all(paths),
        }
        cold_ok = True
        cold, warm = {}, {}
        for name, fn in candidates.items():
            cold_ok = evict(paths) and cold_ok
            cold[name] = timed(fn)
            warm[name] = statistics.median(timed(fn) for _ in range(args.repeat))

        mb = total / 1e6
        print(f"\n{'':30} {'cold s':>9} {'MB/s':>9} {'warm s':>9} {'MB/s':>9}"
              + ("" if cold_ok else "   (no posix_fadvise: 'cold' runs were warm)"))
        for name in candidates:
            print(f"{name:30} {cold[name]:9.4f} {mb / cold[name]:9,.0f} "
                  f"{warm[name]:9.4f} {mb / warm[name]:9,.0f}")
        read = "read every byte (cat)"
        print()
        for name in candidates:
            if name != read:
                print(f"{name} / reading: {cold[name] / cold[read]:.3f} cold, "
                      f"{warm[name] / warm[read]:.3f} warm")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
