"""Checkpoints are data: they round-trip, a file that would run code is refused, writes are atomic."""

from __future__ import annotations

import os
import pickle
import shlex

import pytest
import torch
from torch import nn

from dltrain.atomic import atomic_write, atomic_write_text
from dltrain.checkpoint import load_checkpoint, save_checkpoint, versions
from dltrain.errors import UserError


def test_round_trip_of_state_and_plain_values(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "best": 0.25,
        "stop_reason": None,
        "history": [{"epoch": 1, "val_loss": 0.5}],
        "config": {"model": {"name": "mlp", "hidden_sizes": [4]}, "optim": {"betas": [0.9, 0.99]}},
        "input_shape": (1, 8, 8),
        "rng": {"shuffle": torch.Generator().manual_seed(5).get_state()},
        "versions": versions(),
    }
    path = tmp_path / "sub" / "last.pt"

    save_checkpoint(path, checkpoint)
    loaded = load_checkpoint(path)

    assert loaded.keys() == checkpoint.keys()
    for key in ("epoch", "best", "stop_reason", "history", "config", "input_shape", "versions"):
        assert loaded[key] == checkpoint[key]
    assert torch.equal(loaded["rng"]["shuffle"], checkpoint["rng"]["shuffle"])
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(loaded["model"][name], tensor), name
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fresh.load_state_dict(loaded["model"])
    fresh_opt = torch.optim.Adam(fresh.parameters())
    fresh_opt.load_state_dict(loaded["optimizer"])
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    # nothing but the checkpoint was left in the folder
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    payload = {"model": {}, "epoch": 1, "hook": RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    assert not marker.exists()

    with pytest.raises(UserError) as e:
        load_checkpoint(path)

    assert not marker.exists(), "loading the checkpoint ran its code"
    assert str(path) in str(e.value)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint either


def truncated_checkpoint(tmp_path):
    path = tmp_path / "full.pt"
    save_checkpoint(path, {"w": torch.ones(1000)})
    return path.read_bytes()[:200]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda _: b"", id="empty"),
        pytest.param(lambda _: b"epoch,val_loss\n1,0.5\n", id="metrics-csv"),
        pytest.param(lambda _: b"model:\n  name: mlp\n", id="yaml"),
        pytest.param(lambda _: b"PK\x03\x04 not really a zip", id="broken-zip"),
        pytest.param(truncated_checkpoint, id="truncated"),
    ],
)
def test_unreadable_checkpoint_is_a_user_error(tmp_path, content):
    """Whatever the file holds, a bad checkpoint is the user's input error, never a traceback."""
    path = tmp_path / "bad.pt"
    path.write_bytes(content(tmp_path))
    with pytest.raises(UserError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------
# atomic writes
def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "b" / "file.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["file.txt"]


def test_failed_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()

    def write_half_then_fail(f):
        f.write(b"half of a new checkpoint")
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        atomic_write(path, write_half_then_fail)

    assert path.read_bytes() == before
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "a temporary file was left behind"


def test_failed_first_write_creates_nothing(tmp_path):
    path = tmp_path / "new.txt"

    def fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # BaseException too: Ctrl-C midway must not leave a stub

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    path = tmp_path / "mode.txt"
    atomic_write_text(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
