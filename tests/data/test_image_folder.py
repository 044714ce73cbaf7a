"""data=image_folder: torchvision's ImageFolder layout, decoded into memory or streamed from
disk through a DataLoader, with the same batches either way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data import StreamSplit, load_data
from dltrain.data.base import Split
from dltrain.data.batching import iterate, num_batches
from dltrain.errors import UserError
from dltrain.schema import ImageFolderDataConfig

from data_support import write_image_folder


def folder_config(path, **kw) -> ImageFolderDataConfig:
    kw.setdefault("num_workers", 0)
    return ImageFolderDataConfig(name="image_folder", path=str(path), **kw)


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "pets", per_class=10)


def test_in_memory_images_are_uint8_resized_and_stratified(folder):
    data = load_data(folder_config(folder, image_size=8))
    info = data.info
    assert (info.kind, info.input_shape, info.task, info.num_outputs, info.class_names) == (
        "image", (3, 8, 8), "classification", 3, ("cat", "dog", "fish"))
    for _, split in data.splits():
        assert isinstance(split, Split)
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (3, 8, 8)
    # 10 images per class: round(1.5) = 2 each for test and val, 6 for training
    assert [np.bincount(s.y.numpy(), minlength=3).tolist() for _, s in data.splits()] == [
        [6, 6, 6], [2, 2, 2], [2, 2, 2]]


def test_grayscale_gives_one_channel(folder):
    data = load_data(folder_config(folder, image_size=6, grayscale=True))
    assert data.info.input_shape == (1, 6, 6) and data.train.x.shape[1:] == (1, 6, 6)


def test_normalization_is_fitted_on_the_training_images(folder):
    data = load_data(folder_config(folder, image_size=8))
    x = data.train.transform(data.train.x).double()
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-4)
    # the class colours make the channel means differ from 0.5, so statistics were fitted
    assert not np.allclose(data.train.transform.mean, 0.5, atol=0.01)


def test_streamed_splits_give_the_same_batches_as_in_memory(folder):
    kept = load_data(folder_config(folder, image_size=8))
    streamed = load_data(folder_config(folder, image_size=8, max_memory_mb=0))
    assert all(isinstance(s, StreamSplit) for _, s in streamed.splits())
    assert [len(s) for _, s in kept.splits()] == [len(s) for _, s in streamed.splits()]
    # a stream's statistics come from (here: all of) the training images
    np.testing.assert_allclose(streamed.train.transform.mean, kept.train.transform.mean, rtol=1e-6)
    for (name, a), (_, b) in zip(kept.splits(), streamed.splits()):
        b = b.to(torch.device("cpu"))
        for shuffle in (False, True):
            ga, gb = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
            batches_a = list(iterate(a, 4, shuffle=shuffle, generator=ga))
            batches_b = list(iterate(b, 4, shuffle=shuffle, generator=gb))
            assert len(batches_a) == len(batches_b) == num_batches(len(a), 4)
            for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
                assert xb.dtype == torch.float32
                torch.testing.assert_close(xa, xb)
                assert torch.equal(ya, yb), name


def test_streaming_with_worker_processes(folder):
    data = load_data(folder_config(folder, image_size=8, max_memory_mb=0, num_workers=2))
    assert data.train.num_workers == 2
    batches = list(iterate(data.train, 5, shuffle=True, generator=torch.Generator().manual_seed(0),
                           min_last=2))
    assert sum(len(y) for _, y in batches) == len(data.train) == 18
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6


def test_a_stream_keeps_its_loader_and_workers_across_epochs(folder):
    """Issue 9: one DataLoader per split, its worker processes persistent; each epoch hands it
    that epoch's order. The stream draws nothing from the shuffle generator, so every epoch's
    order is the one the same set held in memory gets."""
    kept = load_data(folder_config(folder, image_size=8))
    streamed = load_data(folder_config(folder, image_size=8, max_memory_mb=0, num_workers=1))
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    loader = None
    for _epoch in range(3):
        batches_a = list(iterate(kept.train, 4, shuffle=True, generator=ga))
        batches_b = list(iterate(streamed.train, 4, shuffle=True, generator=gb))
        loader = loader or streamed.train.loader
        assert streamed.train.loader is loader and loader.persistent_workers
        for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
            torch.testing.assert_close(xa, xb)
            assert torch.equal(ya, yb)
    assert torch.equal(ga.get_state(), gb.get_state())


def test_stream_split_moves_to_a_device_by_recording_it(folder):
    data = load_data(folder_config(folder, max_memory_mb=0))
    moved = data.val.to(torch.device("cpu"))
    assert isinstance(moved, StreamSplit) and moved.device == torch.device("cpu")
    assert len(moved) == len(data.val) == 6


# ---------------------------------------------------------------------------------------------
# bad input
def error_of(cfg) -> str:
    with pytest.raises(UserError) as e:
        data = load_data(cfg)
        for _, split in data.splits():  # a streamed set meets a bad file only when reading
            list(iterate(split, 4, shuffle=False))
    return str(e.value)


def test_missing_folder(tmp_path):
    message = error_of(folder_config(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in message and "does not exist" in message


def test_folder_without_class_folders(tmp_path):
    write_image_folder(tmp_path / "flat", per_class=2)
    for png in (tmp_path / "flat" / "cat").glob("*.png"):
        png.rename(tmp_path / "flat" / f"cat_{png.name}")
    for sub in (tmp_path / "flat").iterdir():
        if sub.is_dir():
            for f in sub.iterdir():
                f.unlink()
            sub.rmdir()
    message = error_of(folder_config(tmp_path / "flat"))
    assert str(tmp_path / "flat") in message and "class folder" in message


def test_class_folder_without_images(tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=2)
    (root / "empty").mkdir()
    message = error_of(folder_config(root))
    assert "empty" in message and "one sub-folder of images per class" in message


@pytest.mark.parametrize("mode", [
    {"num_workers": 0},
    {"num_workers": 1},  # the error comes back from a worker process
    {"num_workers": 0, "max_memory_mb": 0},  # streamed: the error comes when the file is read
])
def test_unreadable_image_names_the_file(folder, mode):
    bad = folder / "dog" / "broken.png"
    bad.write_bytes(b"this is not a png")
    message = error_of(folder_config(folder, **mode))
    assert message.startswith(f"cannot read image {bad}")
    assert "\n" not in message and "Traceback" not in message


def test_streamed_run_resumes_exactly_after_sigterm_mid_epoch(folder, tmp_path):
    """Issue 7 item 7: a streamed image folder (max_memory_mb=0, worker processes) stopped by
    SIGTERM inside an epoch and resumed gives the weights and metrics.csv of an uninterrupted
    run, with dropout drawing random masks in every step."""
    import io
    import os
    import signal

    from rich.console import Console

    from dltrain import runs
    from dltrain.checkpoint import load_checkpoint
    from dltrain.train.loop import Callback, TrainingInterrupted
    from dltrain.train.run import run_training
    from data_support import config

    cfg = config({"name": "image_folder", "path": str(folder), "image_size": 8,
                  "max_memory_mb": 0, "num_workers": 1}, model="mlp", epochs=2, batch_size=4)
    cfg.regularization.dropout = 0.3
    quiet = Console(file=io.StringIO())

    class SigtermAt(Callback):
        def on_step(self, job, batch, running):
            if job.state.step == 7:  # 18 training images in 5 batches: epoch 2, its second
                os.kill(os.getpid(), signal.SIGTERM)

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_training(cfg, straight, quiet)
    with pytest.raises(TrainingInterrupted):
        run_training(cfg, stopped, quiet, callbacks=[SigtermAt()])
    last = load_checkpoint(stopped / runs.CHECKPOINTS / runs.LAST)
    assert (last["epoch"], last["batch"]) == (1, 2)
    run_training(cfg, stopped, quiet, resume=True)

    def weights(root):
        return load_checkpoint(root / runs.CHECKPOINTS / runs.LAST)["model"]

    a, b = weights(straight), weights(stopped)
    assert all(torch.equal(a[k], b[k]) for k in a)
    timing = ("epoch_time_s", "samples_per_s")
    rows = [[{k: v for k, v in row.items() if k not in timing}
             for row in runs.read_metrics(root / runs.METRICS)] for root in (straight, stopped)]
    assert rows[0] == rows[1] and len(rows[0]) == 2
