"""Building a fingerprint: what describes the data of each source (see the package docstring).

Nothing here imports torch or torchvision: this runs before any data are loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from dltrain.errors import UserError
from dltrain.schema import DataConfig

# bump when what a fingerprint holds changes meaning (e.g. folder digests that hash contents)
FORMAT = 1
CHUNK = 1 << 20  # bytes read at a time when hashing a file

# torchvision.datasets.folder.IMG_EXTENSIONS: the files ImageFolder takes for images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# dltrain.data.torchvision_sets: where the files of the built-in image sets live
ROOT_ENV = "DLTRAIN_DATA"
DEFAULT_ROOT = "~/.cache/dltrain/data"
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# the files torchvision's dataset classes read, relative to the data root
VISION_FILES: Dict[str, Tuple[str, ...]] = {
    "mnist": tuple(f"MNIST/raw/{f}" for f in _MNIST_FILES),
    "fashion_mnist": tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_FILES),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch", "batches.meta")),
}
# torchvision's MNIST reads these instead of the raw files when both exist (its old cache)
_MNIST_LEGACY = ("processed/training.pt", "processed/test.pt")
# the scikit-learn files dltrain.data.sklearn_sets reads (its fallback loaders give the same data)
BUNDLED_FILES: Dict[str, Tuple[str, ...]] = {
    "digits": ("digits.csv.gz",),
    "diabetes": ("diabetes_data_raw.csv.gz", "diabetes_target.csv.gz"),
}
# data config fields that choose how the samples are split or labelled, not which samples there
# are; config.yaml records them, and rerun compares configs
_SPLIT_FIELDS = {"name", "task", "val_fraction", "test_fraction"}
# the library whose code makes the samples of a generated or bundled set
_LIBRARY = {"sine": "numpy", "adding": "numpy", "synthetic": "numpy",
            "digits": "scikit-learn", "diabetes": "scikit-learn"}


def fingerprint(cfg: DataConfig) -> Dict[str, Any]:
    """A YAML-safe description of the data ``cfg`` selects (see :mod:`dltrain.fingerprint`).

    Raises :class:`UserError` naming a file or folder that is missing or unreadable. For mnist,
    fashion_mnist and cifar10, call it once the loader has run: the loader downloads and unpacks.
    """
    try:
        describe = _SOURCES[cfg.name]
    except KeyError:
        raise LookupError(f"dltrain.fingerprint has no rule for data={cfg.name}") from None
    return {"format": FORMAT, "name": cfg.name, **describe(cfg)}


def file_sha256(path: str) -> str:
    """The sha256 of a file's contents, read in chunks."""
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):  # Python >= 3.11: reads into one reused buffer
            return hashlib.file_digest(f, "sha256").hexdigest()
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
        return h.hexdigest()


def file_entry(path: str) -> Dict[str, Any]:
    try:
        return {"size": os.stat(path).st_size, "sha256": file_sha256(path)}
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def folder_entry(root: str) -> Dict[str, Any]:
    """Count, total size and digest of the images torchvision's ImageFolder takes from ``root``
    (every file with an image extension below a class sub-folder, symbolic links followed).

    Only the list of (relative path, size) is hashed, not the contents: a listing costs a stat
    per file, hashing costs a full read. scripts/bench_fingerprint.py, 1 GiB (2 shared cores,
    a VM disk): in 1,000 files the listing takes 4 ms, sha256 of the contents 2.0 s from disk
    (1.4 times a plain read) and 1.2 s from the page cache; in 100,000 files 0.4 s against 13 s.
    That would be minutes for an ImageNet-sized folder, at every eval and resume. A file added,
    removed, renamed, moved to another class or changed in size is caught; an image rewritten in
    place at exactly the same size is not.
    """
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    except OSError as e:
        raise UserError(f"cannot read the folder {root}: {e.strerror or e}") from None
    listing: List[Tuple[str, int]] = []
    per_class: Dict[str, Dict[str, int]] = {}
    start = len(os.path.join(root, ""))  # paths below root begin with root and a separator
    for name in classes:
        count = total = 0
        # os.walk as ImageFolder walks (it skips sub-folders it cannot list, as the loader does);
        # string slicing, not os.path.relpath, which costs more than the stat on 100,000 files
        for folder, _, files in os.walk(os.path.join(root, name), followlinks=True):
            for file in files:
                if not file.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = folder + os.sep + file
                try:
                    size = os.stat(path).st_size
                except OSError as e:
                    raise UserError(f"cannot read {path}: {e.strerror or e}") from None
                listing.append((path[start:].replace(os.sep, "/"), size))
                count, total = count + 1, total + size
        per_class[name] = {"files": count, "bytes": total}
    digest = hashlib.sha256()
    for rel, size in sorted(listing):
        # NUL cannot occur in a file name, so no two listings give the same bytes
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0" + str(size).encode() + b"\n")
    return {"files": len(listing), "bytes": sum(size for _, size in listing),
            "digest": digest.hexdigest(), "classes": per_class}


def _absolute(path: str) -> str:
    # abspath, not resolve(): the user's own spelling of a symbolic link is the one to show
    return os.path.abspath(os.path.expanduser(path))


def _file_set(cfg: Any) -> Dict[str, Any]:
    path = _absolute(cfg.path)
    if not os.path.exists(path):
        raise UserError(f"data.path={path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"data.path={path} is a folder; data={cfg.name} needs a file")
    return {"files": {path: file_entry(path)}}


def _folder_set(cfg: Any) -> Dict[str, Any]:
    path = _absolute(cfg.path)
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise UserError(f"data.path={path} {what}; data={cfg.name} needs a folder with one "
                        "sub-folder of images per class")
    return {"folders": {path: folder_entry(path)}}


def _vision_set(cfg: Any) -> Dict[str, Any]:
    root = _absolute(cfg.root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    names = VISION_FILES[cfg.name]
    if cfg.name != "cifar10":
        folder = os.path.dirname(os.path.dirname(names[0]))  # MNIST, FashionMNIST
        legacy = tuple(f"{folder}/{f}" for f in _MNIST_LEGACY)
        if all(os.path.isfile(os.path.join(root, f)) for f in legacy):
            names = legacy
    files = {}
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise UserError(f"data={cfg.name}: {path} is missing (dltrain's loader downloads and "
                            f"unpacks it; data.root or ${ROOT_ENV} choose the folder)")
        files[path] = file_entry(path)
    return {"files": files}


def _library(name: str) -> Dict[str, str]:
    library = _LIBRARY[name]
    try:
        version = metadata.version(library)
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {library: version}


# the version of dltrain's code that draws each generated set: bump it when the same parameters
# start to draw other samples, so that runs made before say that their data changed
GENERATORS = {"sine": "1", "adding": "1", "synthetic": "2"}  # synthetic 2: smoother prototypes


def _generated_set(cfg: Any) -> Dict[str, Any]:
    params = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
              if f.name not in _SPLIT_FIELDS}
    library = {**_library(cfg.name), f"dltrain's {cfg.name} generator": GENERATORS[cfg.name]}
    return {"generated": params, "library": library}


def _bundled_set(cfg: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"library": _library(cfg.name)}
    spec = find_spec("sklearn")  # finds the package without importing it (over a second)
    if spec is not None and spec.submodule_search_locations:
        data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
        paths = [data / name for name in BUNDLED_FILES[cfg.name]]
        if all(p.is_file() for p in paths):
            out["files"] = {str(p): file_entry(str(p)) for p in paths}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_SOURCES: Dict[str, Callable[[Any], Dict[str, Any]]] = {
    "csv": _file_set,
    "npz": _file_set,
    "image_folder": _folder_set,
    "mnist": _vision_set,
    "fashion_mnist": _vision_set,
    "cifar10": _vision_set,
    "digits": _bundled_set,
    "diabetes": _bundled_set,
    "sine": _generated_set,
    "adding": _generated_set,
    "synthetic": _generated_set,
}
NAMES = tuple(_SOURCES)
