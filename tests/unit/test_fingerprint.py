"""issue 7 item 11: the fingerprint of a run's data, and the one-line differences eval, replay
and resume stop with."""

from __future__ import annotations

import os
from importlib import metadata

import pytest
import yaml

from dltrain import fingerprint as fp
from dltrain.errors import UserError
from dltrain.schema import (GROUPS, CSVDataConfig, DataConfig, ImageFolderDataConfig,
                            NpzDataConfig, SineDataConfig, SyntheticDataConfig,
                            TorchvisionDataConfig)

ROWS = "age,income,label\n" + "".join(f"{20 + i % 40},{1000 + 7 * i},{i % 2}\n" for i in range(60))


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def csv_config(path) -> CSVDataConfig:
    return CSVDataConfig(name="csv", path=str(path), target="label")


def image_folder(root, classes=("cat", "dog"), per_class=2, size=100):
    for name in classes:
        for i in range(per_class):
            write(root / name / f"{i}.png", bytes([i]) * size)
    return ImageFolderDataConfig(name="image_folder", path=str(root))


# ---------------------------------------------------------------------------------------------
# files
def test_the_same_file_is_the_same_data(tmp_path):
    path = write(tmp_path / "people.csv", ROWS.encode())
    first = fp.fingerprint(csv_config(path))
    assert first["files"] == {str(path): {"size": len(ROWS), "sha256": fp.file_sha256(str(path))}}
    assert fp.compare(first, fp.fingerprint(csv_config(path))) == []


def test_appended_rows_name_the_file_and_both_sizes(tmp_path):
    path = write(tmp_path / "people.csv", ROWS.encode())
    before = fp.fingerprint(csv_config(path))
    more = "".join(f"{30},{5000 + i},{i % 2}\n" for i in range(150))
    path.write_bytes((ROWS + more).encode())
    [line] = fp.compare(before, fp.fingerprint(csv_config(path)))
    assert line.startswith(f"{path} changed: ")
    assert f"{len(ROWS):,} → {len(ROWS + more):,} bytes" in line
    assert before["files"][str(path)]["sha256"][:6] in line


def test_an_edit_that_keeps_the_size_is_caught_by_the_hash(tmp_path):
    path = write(tmp_path / "people.csv", ROWS.encode())
    before = fp.fingerprint(csv_config(path))
    path.write_bytes(ROWS.replace("label", "lebal").encode())
    [line] = fp.compare(before, fp.fingerprint(csv_config(path)))
    assert f"same size ({len(ROWS):,} bytes)" in line and "sha256" in line


def test_hashing_streams_files_larger_than_a_chunk(tmp_path, monkeypatch):
    data = os.urandom(3 * 1024 + 17)
    path = write(tmp_path / "arrays.npz", data)
    import hashlib

    monkeypatch.setattr("dltrain.fingerprint.describe.CHUNK", 1024)  # read where it is used
    monkeypatch.delattr(hashlib, "file_digest", raising=False)  # the Python 3.10 path
    assert fp.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_a_relative_path_is_recorded_absolute(tmp_path, monkeypatch):
    write(tmp_path / "arrays.npz", b"npz")
    monkeypatch.chdir(tmp_path)
    got = fp.fingerprint(NpzDataConfig(name="npz", path="arrays.npz"))
    assert list(got["files"]) == [str(tmp_path / "arrays.npz")]


def test_a_missing_file_or_a_folder_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="gone.csv: no such file"):
        fp.fingerprint(csv_config(tmp_path / "gone.csv"))
    with pytest.raises(UserError, match="is a folder"):
        fp.fingerprint(csv_config(tmp_path))


def test_a_moved_file_with_the_same_contents_is_the_same_data(tmp_path):
    old = write(tmp_path / "a" / "people.csv", ROWS.encode())
    new = write(tmp_path / "b" / "people_v2.csv", ROWS.encode())
    assert fp.compare(fp.fingerprint(csv_config(old)), fp.fingerprint(csv_config(new))) == []
    new.write_bytes(ROWS.encode() + b"99,1,0\n")
    [line] = fp.compare(fp.fingerprint(csv_config(old)), fp.fingerprint(csv_config(new)))
    assert line.startswith(f"{old} → {new} changed: ")


# ---------------------------------------------------------------------------------------------
# folders
def test_a_folder_records_the_images_the_loader_takes(tmp_path):
    cfg = image_folder(tmp_path / "imgs")
    write(tmp_path / "imgs" / "dog" / "deeper" / "x.JPG", b"12345")  # nested, upper-case: taken
    write(tmp_path / "imgs" / "dog" / "notes.txt", b"not an image")
    write(tmp_path / "imgs" / "top.png", b"outside every class folder")
    [(key, entry)] = fp.fingerprint(cfg)["folders"].items()
    assert key == str(tmp_path / "imgs")
    assert (entry["files"], entry["bytes"]) == (5, 4 * 100 + 5)
    assert entry["classes"] == {"cat": {"files": 2, "bytes": 200},
                                "dog": {"files": 3, "bytes": 205}}


def test_the_loader_takes_the_same_images(tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert fp.IMAGE_EXTENSIONS == IMG_EXTENSIONS
    cfg = image_folder(tmp_path / "imgs")
    write(tmp_path / "imgs" / "dog" / "deeper" / "x.JPG", b"12345")
    write(tmp_path / "imgs" / "dog" / "notes.txt", b"not an image")
    assert fp.fingerprint(cfg)["folders"][cfg.path]["files"] == len(ImageFolder(cfg.path).samples)


def add(root):
    write(root / "cat" / "9.png", b"x" * 50)


def add_class(root):
    write(root / "bird" / "0.png", b"x" * 100)


def resize(root):
    write(root / "dog" / "1.png", b"x" * 2000)


FOLDER_CHANGES = {
    "added": (add, "4 → 5 files (400 bytes → 450 bytes); cat/ 2 → 3 files"),
    "removed": (lambda root: (root / "dog" / "1.png").unlink(),
                "4 → 3 files (400 bytes → 300 bytes); dog/ 2 → 1 files"),
    "resized": (resize,
                "the same number of files (4), 400 bytes → 2.3 KB; dog/ 200 bytes → 2.1 KB"),
    "new class": (add_class,
                  "4 → 5 files (400 bytes → 500 bytes); bird/ is new (1 file, 100 bytes)"),
    "renamed": (lambda root: (root / "cat" / "1.png").rename(root / "cat" / "7.png"),
                "the same 4 files, 400 bytes in total, but files were renamed"),
    "moved to another class": (lambda root: (root / "cat" / "1.png").rename(root / "dog" / "7.png"),
                               "cat/ 2 → 1 files, dog/ 2 → 3 files"),
}


@pytest.mark.parametrize("change, expected", FOLDER_CHANGES.values(), ids=FOLDER_CHANGES)
def test_a_changed_folder_names_the_folder_and_the_class(tmp_path, change, expected):
    cfg = image_folder(tmp_path / "imgs")
    before = fp.fingerprint(cfg)
    change(tmp_path / "imgs")
    [line] = fp.compare(before, fp.fingerprint(cfg))
    assert line.startswith(f"{cfg.path}: ") and expected in line


def test_a_copied_folder_is_the_same_data_and_other_files_do_not_count(tmp_path):
    before = fp.fingerprint(image_folder(tmp_path / "a" / "imgs"))
    cfg = image_folder(tmp_path / "b" / "imgs")
    write(tmp_path / "b" / "imgs" / "cat" / "README.md", b"notes")
    assert fp.compare(before, fp.fingerprint(cfg)) == []


def test_a_missing_folder_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="nowhere does not exist"):
        fp.fingerprint(ImageFolderDataConfig(name="image_folder", path=str(tmp_path / "nowhere")))


# ---------------------------------------------------------------------------------------------
# generated and bundled sets
def test_a_generated_set_records_what_draws_it():
    got = fp.fingerprint(SyntheticDataConfig(name="synthetic"))
    assert got["generated"] == {"shape": [1, 28, 28], "num_samples": 4096, "num_classes": 10,
                                "seed": 0, "split_seed": 0}
    assert got["library"] == {"numpy": metadata.version("numpy"),
                              "dltrain's synthetic generator": fp.GENERATORS["synthetic"]}


def test_a_changed_parameter_is_named():
    before = fp.fingerprint(SineDataConfig(name="sine"))
    after = fp.fingerprint(SineDataConfig(name="sine", num_samples=3000, noise=0.1))
    assert fp.compare(before, after) == ["data.num_samples: 4000 → 3000",
                                         "data.noise: 0.05 → 0.1"]
    # the split fractions choose which samples are tested, not which samples exist: config.yaml
    # records those
    same = fp.fingerprint(SineDataConfig(name="sine", test_fraction=0.3))
    assert fp.compare(before, same) == []


def test_a_bundled_set_records_the_library_and_its_files():
    got = fp.fingerprint(DataConfig(name="digits"))
    assert got["library"] == {"scikit-learn": metadata.version("scikit-learn")}
    [path] = got["files"]
    assert path.endswith("digits.csv.gz") and os.path.isabs(path)
    assert fp.compare(got, fp.fingerprint(DataConfig(name="digits"))) == []


def test_a_library_upgrade_is_a_change():
    current = fp.fingerprint(DataConfig(name="diabetes"))
    recorded = {**current, "library": {"scikit-learn": "1.3.0"}}
    assert fp.compare(recorded, current) == [
        f"scikit-learn 1.3.0 → {metadata.version('scikit-learn')} "
        "(it provides the samples of data=diabetes)"]


def test_another_data_set_is_one_line():
    assert fp.compare(fp.fingerprint(DataConfig(name="digits")),
                      fp.fingerprint(SyntheticDataConfig(name="synthetic"))) == [
        "data: digits → synthetic"]


# ---------------------------------------------------------------------------------------------
# torchvision sets
def test_mnist_records_the_raw_files_torchvision_reads(tmp_path):
    cfg = TorchvisionDataConfig(name="mnist", root=str(tmp_path))
    with pytest.raises(UserError, match="train-images-idx3-ubyte is missing"):
        fp.fingerprint(cfg)
    for name in fp.VISION_FILES["mnist"]:
        write(tmp_path / name, name.encode())
    got = fp.fingerprint(cfg)
    assert sorted(got["files"]) == sorted(str(tmp_path / n) for n in fp.VISION_FILES["mnist"])
    write(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", b"other labels")
    [line] = fp.compare(got, fp.fingerprint(cfg))
    assert line.startswith(f"{tmp_path / 'MNIST' / 'raw' / 't10k-labels-idx1-ubyte'} changed")


def test_the_root_and_file_names_match_the_loader(monkeypatch, tmp_path):
    from torchvision import datasets

    from dltrain.data import torchvision_sets

    cfg = TorchvisionDataConfig(name="cifar10")
    monkeypatch.setenv(fp.ROOT_ENV, str(tmp_path))
    assert fp.ROOT_ENV == torchvision_sets.ROOT_ENV
    assert fp.DEFAULT_ROOT == str(torchvision_sets.DEFAULT_ROOT)
    with pytest.raises(UserError, match=str(torchvision_sets.data_root(cfg))):
        fp.fingerprint(cfg)
    for name, cls in (("mnist", datasets.MNIST), ("fashion_mnist", datasets.FashionMNIST)):
        assert fp.VISION_FILES[name] == tuple(
            f"{cls.__name__}/raw/{os.path.splitext(f)[0]}" for f, _ in cls.resources)
    cifar = datasets.CIFAR10
    assert fp.VISION_FILES["cifar10"] == tuple(
        f"{cifar.base_folder}/{f}" for f, _ in cifar.train_list + cifar.test_list) + (
        f"{cifar.base_folder}/{cifar.meta['filename']}",)


# ---------------------------------------------------------------------------------------------
# every set, and fingerprints read back from run.yaml
def test_every_data_set_has_a_rule():
    assert set(fp.NAMES) == set(GROUPS["data"])


def test_a_fingerprint_survives_yaml_and_older_records_are_tolerated(tmp_path):
    cfg = image_folder(tmp_path / "imgs")
    current = fp.fingerprint(cfg)
    assert yaml.safe_load(yaml.safe_dump(current)) == current
    assert fp.compare(yaml.safe_load(yaml.safe_dump(current)), current) == []
    # a record from before a section or a class listing existed compares what it has
    assert fp.compare({"name": "image_folder"}, current) == []
    entry = dict(current["folders"][cfg.path], classes=None, digest="0" * 64, files=3)
    [line] = fp.compare({"name": "image_folder", "folders": {cfg.path: entry}}, current)
    assert line == f"{cfg.path}: 3 → 4 files (400 bytes)"
    generated = fp.fingerprint(SyntheticDataConfig(name="synthetic"))
    assert fp.compare({"name": "synthetic", "generated": {"seed": 0}}, generated) == []
    assert fp.compare({"name": "synthetic", "generated": {"seed": 1}}, generated) == [
        "data.seed: 1 → 0"]


def test_every_generated_set_has_a_generator_version():
    """A generated set's fingerprint names the version of the code that draws it, so a change
    of the generator (issue 7 item 5 changed synthetic's) is reported as changed data."""
    from dltrain.fingerprint.describe import GENERATORS, _SOURCES, _generated_set

    generated = sorted(name for name, rule in _SOURCES.items() if rule is _generated_set)
    assert sorted(GENERATORS) == generated
