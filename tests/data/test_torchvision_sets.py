"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision's own classes, from small fake files in
the real formats written into a temporary root (download=false: no test touches the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.error import URLError

import numpy as np
import pytest
import torch

from dltrain.data import load_data
from dltrain.data.torchvision_sets import DEFAULT_ROOT, VISION_SETS, data_root
from dltrain.data.transforms import NormalizeImages, RandomCropFlip
from dltrain.errors import UserError
from dltrain.schema import TorchvisionDataConfig

from data_support import CIFAR_CLASSES, write_cifar10, write_mnist

MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def vision_config(name, root, **kw) -> TorchvisionDataConfig:
    return TorchvisionDataConfig(name=name, root=str(root), download=False, **kw)


def image_set(x: torch.Tensor) -> set:
    """The images as a set of their raw bytes (the fake images are all different)."""
    return {img.numpy().tobytes() for img in x}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_sets_load_from_gzipped_idx_files(tmp_path, name):
    written = write_mnist(tmp_path, MNIST_FOLDERS[name], n_train=120, n_test=30)
    data = load_data(vision_config(name, tmp_path, val_fraction=0.25))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs) == (
        "image", (1, 28, 28), "classification", 10)
    for _, split in data.splits():
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (1, 28, 28)
        assert split.y.dtype == torch.int64
    assert (len(data.train), len(data.val), len(data.test)) == (90, 30, 30)

    # the official test set is the test split, in its order; train + val is the training set
    np.testing.assert_array_equal(data.test.x[:, 0].numpy(), written["t10k_images"])
    np.testing.assert_array_equal(data.test.y.numpy(), written["t10k_labels"])
    train_val = torch.cat([data.train.x, data.val.x])[:, 0]
    assert image_set(train_val) == image_set(torch.from_numpy(written["train_images"]))
    # stratified: each of the ten classes gives 3 of its 12 images to validation
    assert np.bincount(data.val.y.numpy(), minlength=10).tolist() == [3] * 10


def test_cifar10_loads_through_the_real_class(tmp_path, skip_cifar_md5):
    written = write_cifar10(tmp_path, per_batch=20, n_test=30)
    data = load_data(vision_config("cifar10", tmp_path, val_fraction=0.2))
    info = data.info
    assert (info.kind, info.input_shape, info.num_outputs) == ("image", (3, 32, 32), 10)
    assert info.class_names == tuple(CIFAR_CLASSES)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 30)
    assert data.train.x.dtype == torch.uint8
    # (N, H, W, C) in torchvision → (N, C, H, W) here, pixel for pixel
    np.testing.assert_array_equal(data.test.x.numpy(), written["test_images"])
    train_val = torch.cat([data.train.x, data.val.x])
    assert image_set(train_val) == image_set(torch.from_numpy(written["train_images"]))


def test_cifar10_archive_put_in_the_root_is_unpacked(tmp_path, skip_cifar_md5):
    """Without network the user may download cifar-10-python.tar.gz elsewhere and drop it in."""
    import shutil
    import tarfile

    written = write_cifar10(tmp_path / "staging")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(tmp_path / "staging")
    data = load_data(vision_config("cifar10", tmp_path))
    np.testing.assert_array_equal(data.test.x.numpy(), written["test_images"])


def test_cifar10_without_the_md5_patch_is_refused_as_corrupted(tmp_path):
    """The md5 check is real: fake files fail it, which is why the other tests patch it."""
    write_cifar10(tmp_path)
    with pytest.raises(UserError, match="missing from .*cifar-10-batches-py"):
        load_data(vision_config("cifar10", tmp_path))


def test_split_is_fixed_by_split_seed(tmp_path):
    write_mnist(tmp_path)
    a = load_data(vision_config("mnist", tmp_path, split_seed=0))
    b = load_data(vision_config("mnist", tmp_path, split_seed=0))
    c = load_data(vision_config("mnist", tmp_path, split_seed=1))
    assert torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.test.x, c.test.x)  # the official test set never moves


@pytest.mark.parametrize("name", list(VISION_SETS))
def test_batches_are_normalized_with_the_known_statistics(tmp_path, name, skip_cifar_md5):
    if name == "cifar10":
        write_cifar10(tmp_path)
    else:
        write_mnist(tmp_path, MNIST_FOLDERS[name])
    data = load_data(vision_config(name, tmp_path))
    spec = VISION_SETS[name]
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    for _, split in data.splits():
        x = split.x[:5]
        want = (x.float() / 255 - mean) / std
        torch.testing.assert_close(split.transform(x), want, rtol=1e-5, atol=1e-5)


def test_augmentation_is_for_training_batches_only(tmp_path, skip_cifar_md5):
    write_cifar10(tmp_path)
    plain = load_data(vision_config("cifar10", tmp_path))
    augmented = load_data(vision_config("cifar10", tmp_path, augment=True))
    assert isinstance(augmented.train.transform.augment, RandomCropFlip)
    assert augmented.train.transform.augment.padding == 4
    for split in (augmented.val, augmented.test, plain.train):
        assert isinstance(split.transform, NormalizeImages) and split.transform.augment is None
    torch.manual_seed(0)
    x = augmented.train.x[:16]
    assert not torch.equal(augmented.train.transform(x), plain.train.transform(x))
    assert torch.equal(augmented.val.transform(x), plain.val.transform(x))


def test_augmentation_is_only_for_cifar10():
    from dltrain.schema import load_config

    with pytest.raises(UserError, match="augment"):
        load_config({"model": {"name": "mlp"}, "activation": {"name": "relu"},
                     "optim": {"name": "adam"}, "data": {"name": "mnist", "augment": True}})


# ---------------------------------------------------------------------------------------------
# where the files are looked for, and what a user sees when they are not there
def test_root_defaults_to_the_environment_then_the_cache(monkeypatch, tmp_path):
    assert data_root(TorchvisionDataConfig(name="mnist")) == DEFAULT_ROOT.expanduser()
    monkeypatch.setenv("DLTRAIN_DATA", str(tmp_path / "env"))
    assert data_root(TorchvisionDataConfig(name="mnist")) == tmp_path / "env"
    explicit = TorchvisionDataConfig(name="mnist", root=str(tmp_path / "mine"))
    assert data_root(explicit) == tmp_path / "mine"


def test_environment_root_is_read(monkeypatch, tmp_path):
    write_mnist(tmp_path)
    monkeypatch.setenv("DLTRAIN_DATA", str(tmp_path))
    data = load_data(TorchvisionDataConfig(name="mnist", download=False))
    assert len(data.test) == 30


def test_missing_mnist_files_say_where_they_go(tmp_path):
    with pytest.raises(UserError) as e:
        load_data(vision_config("mnist", tmp_path))
    message = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "data.download=false" in message
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in message
    assert "data.root" in message and "DLTRAIN_DATA" in message
    assert "\n" not in message


def test_missing_cifar_files_say_where_they_go(tmp_path):
    with pytest.raises(UserError) as e:
        load_data(vision_config("cifar10", tmp_path))
    message = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "cifar-10-python.tar.gz" in message and "data_batch_1" in message


def test_a_failed_download_is_a_user_error(tmp_path, monkeypatch):
    """download=true without network: torchvision's download raises; the user gets one line."""
    import torchvision.datasets

    def offline(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(UserError) as e:
        load_data(TorchvisionDataConfig(name="mnist", root=str(tmp_path), download=True))
    assert "download failed" in str(e.value) and "name resolution" in str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in str(e.value)


def test_corrupt_files_are_a_user_error(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz"):
        load_data(vision_config("mnist", tmp_path))


def test_cli_without_files_exits_cleanly_and_leaves_no_run_folder(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("HYDRA_FULL_ERROR", "DLTRAIN_RUN_UID", "DLTRAIN_DATA")}
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "dltrain", "data=mnist", f"data.root={tmp_path / 'root'}",
         "data.download=false", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    assert str(tmp_path / "root" / "MNIST" / "raw") in output
    assert not run_dir.exists()
