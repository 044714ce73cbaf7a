"""Issue 12, faults of the machine: a full disk, too little memory and a damaged checkpoint each
end a run with one line that says what happened and how to go on, never with a traceback."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from dltrain import runs
from dltrain.atomic import DiskFull, disk_full
from dltrain.checkpoint import load_checkpoint, save_checkpoint, tensor_bytes
from dltrain.errors import UserError
from dltrain.memory import OutOfMemory, out_of_memory, requested_bytes
from dltrain.train.loop import Callback, evaluate
from dltrain.train.run import build_job, run_training

QUIET = Console(file=io.StringIO())
REPO = Path(__file__).resolve().parents[2]
PROC_FD = Path("/proc/self/fd")


# ---------------------------------------------------------------------------------------------
# a full disk, made by making the writes of chosen files fail as the kernel fails them
class FullRaw(io.FileIO):
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, fd: int, room: int) -> None:
        super().__init__(fd, "wb")
        self.room = room

    def write(self, b) -> int:
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return super().write(b)


class FullDisk:
    """Once ``armed``, dltrain's atomic writes of the files named ``names`` fail as they do on a
    full disk: the bytes up to ``room`` reach the temporary file, the rest raise ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names, room: int = 300) -> None:
        from dltrain import atomic

        self.names, self.room, self.armed, self.hits = tuple(names), room, False, 0
        real = os.fdopen

        def fdopen(fd, mode="r", *args, **kwargs):
            if self.armed and "w" in mode and self._targets(fd):
                self.hits += 1
                return io.BufferedWriter(FullRaw(fd, self.room))
            return real(fd, mode, *args, **kwargs)

        monkeypatch.setattr(atomic.os, "fdopen", fdopen)

    def _targets(self, fd: int) -> bool:
        temp = os.path.basename(os.readlink(PROC_FD / str(fd)))  # .NAME.XXXXXX.tmp
        return any(temp.startswith(f".{name}.") for name in self.names)


needs_proc = pytest.mark.skipif(not PROC_FD.is_dir(), reason="names open files through /proc")


@pytest.mark.parametrize("room", [0, 100, 10_000])
def test_torch_save_blames_a_full_disk_on_the_write(room):
    """torch.save turns a failed write of its file object into a RuntimeError ("unexpected
    pos"), chaining the file's OSError: the chain, not the message, says the disk is full."""
    with pytest.raises(Exception) as e:
        with io.BufferedWriter(FullRaw(os.open(os.devnull, os.O_WRONLY), room)) as f:
            torch.save({"w": torch.ones(100_000)}, f)
    assert disk_full(e.value)


def test_other_write_failures_are_not_called_a_full_disk():
    assert not disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . "
                                      "unexpected pos 64 vs 0"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))


@needs_proc
def test_a_full_disk_keeps_the_old_checkpoint_and_says_what_it_needs(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.zeros(3)})
    disk = FullDisk(monkeypatch, ["last.pt"])
    disk.armed = True
    new = {"epoch": 2, "w": torch.ones(2500)}

    with pytest.raises(DiskFull) as e:
        save_checkpoint(path, new)

    assert e.value.path == path and e.value.needed == tensor_bytes(new) == 10_000
    message = str(e.value)
    assert message.startswith(f"cannot write {path}: the disk is full (it needs about 10.0 KB, ")
    assert "free there" in message and "\n" not in message
    assert e.value.exit_code == 1
    assert load_checkpoint(path)["epoch"] == 1  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "the partial temporary file stayed"


class FillDiskAfter(Callback):
    """Arms the full disk once epoch ``epoch`` has saved its checkpoints."""

    def __init__(self, disk: FullDisk, epoch: int) -> None:
        self.disk, self.epoch = disk, epoch

    def on_epoch_end(self, job, row, improved):
        if job.state.epoch == self.epoch:
            self.disk.armed = True


@needs_proc
@pytest.mark.parametrize("name", ["last.pt", "best.pt", runs.METRICS])
def test_a_full_disk_mid_run_names_the_intact_checkpoint_and_the_resume(tmp_path, monkeypatch,
                                                                       make_config, name):
    from dltrain.rerun import prepare_resume

    disk = FullDisk(monkeypatch, [name])
    config = make_config(trainer={"epochs": 3})
    with pytest.raises(DiskFull) as e:
        run_training(config, tmp_path, QUIET, callbacks=[FillDiskAfter(disk, 1)])

    where = tmp_path / runs.CHECKPOINTS / name if name.endswith(".pt") else tmp_path / name
    last = tmp_path / runs.CHECKPOINTS / runs.LAST
    message = str(e.value)
    assert message.startswith(f"cannot write {where}: the disk is full (it needs about "), message
    assert message.endswith(f"; the last good checkpoint, {last} (after epoch 1), is intact; "
                            f"once space is freed, continue with: dltrain resume {tmp_path}")
    assert "\n" not in message
    assert not list(tmp_path.rglob("*.tmp"))
    assert load_checkpoint(last)["epoch"] == 1

    # space is freed: the command it gave finishes the run
    disk.armed = False
    plan = prepare_resume(str(tmp_path), [], allow_changes=False)
    summary = run_training(plan.config, plan.root, QUIET, resume=True, event=plan.event)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3


@needs_proc
def test_a_full_disk_before_the_first_checkpoint_says_to_start_again(tmp_path, monkeypatch,
                                                                     make_config):
    disk = FullDisk(monkeypatch, ["last.pt"])
    disk.armed = True
    with pytest.raises(DiskFull) as e:
        run_training(make_config(), tmp_path, QUIET, command=["dltrain", "trainer.epochs=1"])
    assert str(e.value).endswith("; no checkpoint to resume from was saved yet; once space is "
                                 "freed, start again: dltrain trainer.epochs=1")


@needs_proc
def test_a_full_disk_after_training_says_to_evaluate(tmp_path, monkeypatch, make_config):
    disk = FullDisk(monkeypatch, [runs.SUMMARY])
    disk.armed = True
    with pytest.raises(DiskFull) as e:
        run_training(make_config(), tmp_path, QUIET)
    assert str(e.value).endswith(f"once space is freed, evaluate it: dltrain eval {tmp_path}")


# the real command: a driver fills the disk at the second last.pt, then calls dltrain's main
DRIVER = """
import errno, io, os, sys
from dltrain import atomic
real, seen = os.fdopen, []
class Full(io.FileIO):
    def write(self, b):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
def fdopen(fd, mode="r", *args, **kwargs):
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".last.pt."):
        seen.append(fd)
        if len(seen) >= 2:
            return io.BufferedWriter(Full(fd, "wb"))
    return real(fd, mode, *args, **kwargs)
atomic.os.fdopen = fdopen
from dltrain.cli import main
main()
"""


@needs_proc
@pytest.mark.slow
def test_the_command_says_a_full_disk_in_one_line_and_resumes_after(tmp_path):
    driver = tmp_path / "full_disk.py"
    driver.write_text(DRIVER)
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DLTRAIN_RUN_UID")}
    proc = subprocess.run([sys.executable, str(driver), "trainer.epochs=3", "trainer.device=cpu",
                           "model.hidden_sizes=[16]", "trainer.threads=1", f"hydra.run.dir={run}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot write {run}/checkpoints/last.pt: the disk is full")
    assert lines[0].endswith(f"continue with: dltrain resume {run}")
    resumed = subprocess.run([sys.executable, "-m", "dltrain", "resume", str(run)], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert runs.read_metrics(run / runs.METRICS)[-1]["epoch"] == 3


# ---------------------------------------------------------------------------------------------
# out of memory
def test_a_model_larger_than_memory_is_refused_before_allocating(make_config):
    config = make_config(model={"name": "mlp", "hidden_sizes": [1_000_000_000]})
    start = time.perf_counter()
    with pytest.raises(OutOfMemory) as e:
        build_job(config)  # 300 GB of float32 parameters: the allocator is never asked
    assert time.perf_counter() - start < 30
    message = str(e.value)
    assert message.startswith("the model's parameters need 300.0 GB (75,000,000,010 parameters) "
                              "but cpu has ")
    assert message.endswith("available (training needs about 4 times as much, for the "
                            "gradients and the optimizer's state): lower the model's size "
                            "(model.hidden_sizes=[1000000000])")
    assert e.value.exit_code == 1


def test_the_cpu_allocator_failure_is_recognized():
    """torch's CPU allocator says nothing but its message: pin the words dltrain reads."""
    size = 2**50  # 1 PiB: more than any machine's memory and swap
    try:
        torch.empty(size, dtype=torch.uint8)
    except RuntimeError as e:
        assert out_of_memory(e)
        assert requested_bytes(e) == size
    else:
        pytest.skip("this system's allocator promised a petabyte (overcommit)")


def test_cuda_messages_give_the_size():
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                                   "total capacity of 79.1 GiB of which 1.2 GiB is free.")
    assert out_of_memory(error) and requested_bytes(error) == 2 * 2**30
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


CPU_OOM = "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate " \
          "memory: you tried to allocate 123000000 bytes. Error code 12 (Cannot allocate memory)"


def raise_(error):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_building_the_model_out_of_memory(make_config, monkeypatch):
    from dltrain.train import run

    real = run.build_model

    def build(config, info):  # the meta-device check passes, the real build fails
        if torch.empty(0).device.type == "meta":
            return real(config, info)
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(run, "build_model", build)
    with pytest.raises(OutOfMemory) as e:
        build_job(make_config())
    assert str(e.value).startswith("out of memory on cpu allocating the model's parameters "
                                   "(123.0 MB requested, ")
    assert str(e.value).endswith("available): lower the model's size (model.hidden_sizes=[8])")


@pytest.mark.parametrize("error", [
    RuntimeError(CPU_OOM),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    MemoryError()], ids=["cpu", "cuda", "python"])
def test_a_training_step_out_of_memory(make_config, monkeypatch, tmp_path, error):
    from dltrain.train import loop

    monkeypatch.setattr(loop, "train_step", raise_(error))
    with pytest.raises(OutOfMemory) as e:
        run_training(make_config(), tmp_path, QUIET)
    message = str(e.value)
    assert message.startswith("out of memory on cpu in a training step (a batch of 32 samples) (")
    assert message.endswith("available): lower trainer.batch_size=32 or the model's size "
                            "(model.hidden_sizes=[8])")
    assert "\n" not in message


def test_evaluation_out_of_memory(make_config, monkeypatch):
    job = build_job(make_config(trainer={"eval_batch_size": 512}))
    monkeypatch.setattr(job.fast, "forward", raise_(RuntimeError(CPU_OOM)))
    with pytest.raises(OutOfMemory) as e:
        evaluate(job, job.data.val, "val")
    assert str(e.value).startswith("out of memory on cpu evaluating val (batches of 512 samples) "
                                   "(123.0 MB requested, ")
    assert str(e.value).endswith("available): lower trainer.eval_batch_size=512")


def test_other_runtime_errors_pass_through(make_config, monkeypatch):
    job = build_job(make_config())
    monkeypatch.setattr(job.fast, "forward", raise_(RuntimeError("shapes cannot be multiplied")))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        evaluate(job, job.data.val, "val")


# ---------------------------------------------------------------------------------------------
# a damaged checkpoint
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_resume_and_eval_refuse_a_truncated_checkpoint(tmp_path, make_config):
    from dltrain.evaluate import run_eval
    from dltrain.rerun import prepare_resume

    run_training(make_config(trainer={"epochs": 1}), tmp_path, QUIET)
    for name in (runs.LAST, runs.BEST):
        truncate(tmp_path / runs.CHECKPOINTS / name)

    with pytest.raises(UserError) as resume:
        prepare_resume(str(tmp_path), ["trainer.epochs=2"], allow_changes=False)
    with pytest.raises(UserError) as evaluation:
        run_eval(str(tmp_path), "test", "cpu", QUIET)
    for e, name in ((resume, runs.LAST), (evaluation, runs.BEST)):
        path = tmp_path / runs.CHECKPOINTS / name
        assert str(e.value).startswith(f"cannot read checkpoint {path}: "
                                       "the file is damaged or truncated (")
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_the_commands_say_a_truncated_checkpoint_in_one_line(tmp_path, make_config):
    run_training(make_config(trainer={"epochs": 1}), tmp_path / "run", QUIET)
    run = tmp_path / "run"
    for name in (runs.LAST, runs.BEST):
        truncate(run / runs.CHECKPOINTS / name)
    for args, name in ((["resume", str(run), "trainer.epochs=2"], runs.LAST),
                       (["eval", str(run)], runs.BEST)):
        proc = subprocess.run([sys.executable, "-m", "dltrain", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"error: cannot read checkpoint {run / runs.CHECKPOINTS / name}: the file is damaged "
            "or truncated ("), proc.stderr
        assert "Traceback" not in proc.stderr
