"""DDP under torchrun (gloo, two CPU processes) and under srun's environment: the same maths as
one process with the global batch, one run folder, checkpoints that cross between the two, a
failing rank that ends the job, SIGTERM and elastic restarts that resume exactly.

Every job of two processes is real; the one-process side of a comparison (a run, a resume, an
eval) runs in this process, while the job's processes import torch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import pytest
import torch

from tests.data.data_support import write_image_folder

from .helpers import (TRAIN_TIMEOUT_S, assert_ok, cli_env, describe, dltrain_cmd, dltrain_here,
                      finish, load_weights, new_run_folders, read_csv, read_json, read_yaml,
                      train_here)

pytestmark = pytest.mark.slow

FAULTS = Path(__file__).with_name("ddp_faults.py")
# digits: 1259 training samples in batches of 64, so the last batch (43) splits unevenly (22/21).
# Plain SGD: the comparison with one process has no optimizer state to blur it
RUN = ["trainer.progress=plain", "trainer.device=cpu", "optim=sgd", "optim.lr=0.05",
       "model.hidden_sizes=[32]"]
EPOCHS = 2


def torchrun(*args: str, processes: int = 2) -> List[str]:
    # --standalone: a rendezvous on a free local port, so tests never collide on 29500
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", *args]


STARTED: List[subprocess.Popen] = []


def run(cmd: Sequence[str], cwd: Path, env=None, timeout: float = TRAIN_TIMEOUT_S):
    """``cmd`` in a process group of its own; waited for unless ``timeout`` is None."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env or cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    STARTED.append(proc)
    return proc if timeout is None else finish(proc, timeout)


@pytest.fixture(autouse=True, scope="module")
def no_orphans():
    """A test that gives up (a timeout, a failed assertion) leaves no worker behind: torchrun's
    workers outlive a killed agent, so each command's whole process group goes."""
    yield
    for proc in STARTED:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = load_weights(a)["model"], load_weights(b)["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0, msg=key)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same config trained by two processes under torchrun and by one."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "ddp").mkdir()
    one = root / "one"
    # strategy=ddp stated: its resume in one process (below) must still be allowed
    ddp = run(torchrun("-m", "dltrain", *RUN, f"trainer.epochs={EPOCHS}", "trainer.strategy=ddp"),
              root / "ddp", timeout=None)
    try:
        train_here([*RUN, f"trainer.epochs={EPOCHS}"], one)
    finally:
        ddp = finish(ddp)
    assert_ok(ddp)
    folders = new_run_folders(root / "ddp")
    assert len(folders) == 1, folders  # one folder for both processes
    return folders[0], one


def test_two_processes_train_the_weights_of_one_with_the_global_batch(pair):
    ddp, one = pair
    assert_same_weights(ddp / "checkpoints" / "last.pt", one / "checkpoints" / "last.pt", atol=1e-5)
    # the metrics are those of the whole data, summed over the processes
    for a, b in zip(read_csv(ddp / "metrics.csv"), read_csv(one / "metrics.csv")):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), key
    summary = read_json(ddp / "summary.json")
    assert summary["processes"] == 2 and summary["status"] == "completed"
    assert summary["test_acc"] == pytest.approx(read_json(one / "summary.json")["test_acc"], abs=1e-6)
    record = read_yaml(ddp / "run.yaml")
    assert record["distributed"] == {"launcher": "torchrun", "processes": 2, "backend": "gloo",
                                     "restart": 0}


def test_checkpoints_cross_between_ddp_and_one_process(pair, tmp_path):
    """A two-process run resumes and evaluates in one process; a one-process run resumes under
    torchrun; both go on to the same weights."""
    ddp, one = pair
    a, b = tmp_path / "from_ddp", tmp_path / "from_one"
    subprocess.run(["cp", "-r", str(ddp), str(a)], check=True)
    subprocess.run(["cp", "-r", str(one), str(b)], check=True)
    extend = f"trainer.epochs={EPOCHS + 1}"
    in_two = run(torchrun("-m", "dltrain", "resume", str(b), extend), tmp_path, timeout=None)
    try:
        in_one = dltrain_here(["resume", str(a), extend], tmp_path)
    finally:
        in_two = finish(in_two)
    assert_ok(in_one)
    assert_ok(in_two)
    assert_same_weights(a / "checkpoints" / "last.pt", b / "checkpoints" / "last.pt", atol=1e-5)
    assert read_json(b / "summary.json")["processes"] == 2
    assert_ok(dltrain_here(["eval", str(a)], tmp_path))
    assert read_json(a / "eval_test.json")["test_acc"] > 0.5


def test_a_failing_rank_ends_the_job_with_its_message(tmp_path):
    start = time.monotonic()
    proc = run(torchrun(str(FAULTS), "raise@1:3", *RUN, "trainer.epochs=5",
                        f"hydra.run.dir={tmp_path / 'run'}"), tmp_path, timeout=120)
    assert proc.returncode != 0, describe(proc)
    assert "planted fault in rank 1 at step 3" in proc.stderr, describe(proc)
    assert time.monotonic() - start < 120


def test_an_elastic_restart_resumes_from_last_checkpoint(pair, tmp_path):
    """torchrun --max-restarts restarts both processes after rank 1 dies in epoch 2; the job
    finds its folder again and continues from last.pt to the weights of a run never stopped."""
    steps_per_epoch = 20
    proc = run(torchrun("--max-restarts=1", str(FAULTS), f"crash-once@1:{steps_per_epoch + 5}",
                        *RUN, f"trainer.epochs={EPOCHS}"), tmp_path)
    assert_ok(proc)
    folders = new_run_folders(tmp_path)
    assert len(folders) == 1, folders
    record = read_yaml(folders[0] / "run.yaml")
    assert [(e["from_epoch"], e["restart"]) for e in record["resumes"]] == [(1, 1)], record
    assert read_json(folders[0] / "summary.json")["epochs_completed"] == EPOCHS
    assert_same_weights(folders[0] / "checkpoints" / "last.pt",
                        pair[0] / "checkpoints" / "last.pt", atol=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srun(args: Sequence[str], cwd: Path) -> List[subprocess.Popen]:
    """Two ``dltrain`` processes with the variables srun sets for a step of two tasks (no
    torchrun), started in the background."""
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {**cli_env(), "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_PROCID": str(rank),
               "SLURM_LOCALID": str(rank), "SLURM_NODELIST": "localhost", "SLURM_JOB_NAME": "dltrain",
               "MASTER_PORT": port}
        procs.append(run(dltrain_cmd(*args), cwd, env=env, timeout=None))
    return procs


STREAMED = ["model=cnn", "data=image_folder", "data.image_size=8", "data.max_memory_mb=0",
            "data.num_workers=0", "trainer.batch_size=4", "trainer.epochs=2", "trainer.progress=plain",
            "trainer.device=cpu", "regularization.dropout=0.2"]


@dataclass
class Streamed:
    """One streamed job (data from disk, sharded per process; dropout drawing in every step)
    trained twice side by side: stopped by SIGTERM under torchrun, and start to end by two
    processes launched as srun launches them."""

    cwd: Path
    stopped: Path
    stopped_proc: subprocess.CompletedProcess  # the torchrun agent that got the signal
    straight: Path  # the srun job's folder, never stopped


@pytest.fixture(scope="module")
def streamed(tmp_path_factory) -> Streamed:
    """SIGTERM goes to the torchrun agent as soon as epoch 1's last.pt exists, so it lands inside
    epoch 2."""
    cwd = tmp_path_factory.mktemp("streamed")
    images = write_image_folder(cwd / "imgs", per_class=60)
    args = [*STREAMED, f"data.path={images}"]
    (cwd / "srun").mkdir()
    stopped = cwd / "stopped"
    agent = run(torchrun("-m", "dltrain", *args, f"hydra.run.dir={stopped}"), cwd, timeout=None)
    reference = srun(args, cwd / "srun")
    last = stopped / "checkpoints" / "last.pt"
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while not last.exists() and agent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    agent.send_signal(signal.SIGTERM)
    out = finish(agent)
    for proc in reference:
        assert_ok(finish(proc))
    folders = new_run_folders(cwd / "srun")
    assert len(folders) == 1, folders  # one folder for both processes
    return Streamed(cwd, stopped, out, folders[0])


def test_srun_environment_starts_a_ddp_job(streamed):
    """Two processes with the variables srun sets (no torchrun) train one job in one folder (the
    fixture) and record how it was launched; the resumed torchrun job below ends with its
    weights, so the two launchers train the same maths."""
    summary = read_json(streamed.straight / "summary.json")
    assert summary["status"] == "completed" and summary["processes"] == 2
    distributed = read_yaml(streamed.straight / "run.yaml")["distributed"]
    assert (distributed["launcher"], distributed["processes"]) == ("slurm", 2)


def test_sigterm_stops_a_streamed_ddp_job_and_its_resume_matches(streamed):
    """SIGTERM to the torchrun agent inside epoch 2: rank 0 writes last.pt once, inside the epoch;
    the resumed two-process job ends with the weights of one never stopped (here the srun job,
    which so also trains the weights of a torchrun job)."""
    stopped, out = streamed.stopped, streamed.stopped_proc
    assert out.stderr.count("checkpoints/last.pt is saved") == 1, describe(out)
    last = stopped / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["batch"] > 0, "the signal was meant to land inside epoch 2"
    assert read_json(stopped / "summary.json")["status"] == "interrupted"
    assert_ok(run(torchrun("-m", "dltrain", "resume", str(stopped)), streamed.cwd))
    straight = streamed.straight
    assert_same_weights(last, straight / "checkpoints" / "last.pt", atol=0)
    for a, b in zip(read_csv(stopped / "metrics.csv"), read_csv(straight / "metrics.csv")):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=1e-6)
