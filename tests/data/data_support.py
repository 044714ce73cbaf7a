"""Helpers of the data-source tests (a uniquely named module: tests/unit and tests/cli have
their own): writers of small files in the real on-disk formats, and a one-epoch training run."""

from __future__ import annotations

import copy
import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
from rich.console import Console

from dltrain.schema import TrainConfig, load_config

MODELS: Dict[str, Dict[str, Any]] = {
    "mlp": {"name": "mlp", "hidden_sizes": [16]},
    "cnn": {"name": "cnn", "channels": [4, 8], "hidden_size": 16},
    "rnn": {"name": "rnn", "hidden_size": 8},
    "lstm": {"name": "lstm", "hidden_size": 8},
    "gru": {"name": "gru", "hidden_size": 8},
}


def config(data: Dict[str, Any], model: str = "mlp", **trainer: Any) -> TrainConfig:
    """One epoch of a tiny model on the CPU, on ``data``."""
    return load_config({
        "model": copy.deepcopy(MODELS[model]),
        "activation": {"name": "relu"},
        "optim": {"name": "adam", "lr": 1e-3},
        "data": data,
        "trainer": {"epochs": 1, "batch_size": 32, "device": "cpu", "progress": "none", **trainer},
    })


def train(data: Dict[str, Any], run_dir: Path, model: str = "mlp", **trainer: Any) -> Dict[str, Any]:
    """Train through the real entry point of a run; returns the summary."""
    from dltrain.train.run import run_training

    return run_training(config(data, model, **trainer), Path(run_dir), Console(file=io.StringIO()))


# ---------------------------------------------------------------------------------------------
# torchvision's on-disk formats
def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """An IDX file (big-endian header: 0, 0, type 0x08 = uint8, ndim; then each size), gzipped,
    as the MNIST files are published."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fake_images(n: int, shape: Sequence[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images, ten classes of balanced labels, and image i's first pixel = i % 256
    so that a test can tell which image ended up where."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images.reshape(n, -1)[:, 0] = np.arange(n) % 256
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 120, n_test: int = 30) -> Dict[str, np.ndarray]:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``."""
    raw = root / folder / "raw"
    arrays = {}
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = fake_images(n, (28, 28), seed)
        write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images, labels
    return arrays


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30) -> Dict[str, np.ndarray]:
    """``<root>/cifar-10-batches-py/``: data_batch_1..5 and test_batch (pickled dicts of ``data``,
    uint8 (N, 3072) rows in channel-major order, and ``labels``), and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(1, 6):
        images, labels = fake_images(per_batch, (3, 32, 32), seed=i)
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                              "data": images.reshape(per_batch, -1),
                                              "labels": labels.tolist()})
        train.append((images, labels))
    test_images, test_labels = fake_images(n_test, (3, 32, 32), seed=9)
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1",
                                    "data": test_images.reshape(n_test, -1),
                                    "labels": test_labels.tolist()})
    _pickle(folder / "batches.meta", {"label_names": CIFAR_CLASSES, "num_vis": 3072,
                                      "num_cases_per_batch": per_batch})
    return {"train_images": np.concatenate([t[0] for t in train]),
            "train_labels": np.concatenate([t[1] for t in train]),
            "test_images": test_images, "test_labels": test_labels}


def _pickle(path: Path, obj: Any) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


# ---------------------------------------------------------------------------------------------
# files of the user's
def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def classification_csv(path: Path, n: int = 60, seed: int = 0) -> Path:
    """Numeric, text and target columns: a learnable rule, one row per line after the header."""
    rng = np.random.default_rng(seed)
    lines = ["height,colour,weight,label"]
    for i in range(n):
        colour = ["red", "green", "blue"][i % 3]
        height = rng.normal(170, 10)
        weight = rng.normal(70, 5)
        label = "tall" if height > 170 else "short"
        lines.append(f"{height:.2f},{colour},{weight:.2f},{label}")
    return write_csv(path, "\n".join(lines) + "\n")


def write_image_folder(root: Path, classes: Sequence[str] = ("cat", "dog", "fish"),
                       per_class: int = 10, seed: int = 0, sizes: Optional[Sequence[tuple]] = None) -> Path:
    """``root/<class>/<i>.png`` in varied sizes (so resizing is exercised), RGB, and a class
    colour in the mean so the classes are learnable."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = sizes or [(12, 16), (16, 12), (20, 20)]
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            image = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
            image[..., c % 3] += 120
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root
