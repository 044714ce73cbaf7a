"""The parts of data-parallel training that need no second process: reading a launcher's
environment, splitting batches, adding up metrics, and the refusals. tests/experiments/test_ddp.py
runs real two-process jobs."""

from __future__ import annotations

import os

import pytest
import torch

from dltrain import distributed
from dltrain.data import Split
from dltrain.data.base import DataInfo
from dltrain.data.batching import batch_bounds, iterate, shard_of
from dltrain.device import resolve_device
from dltrain.distributed import Dist, Launch, check_strategy, detect, first_host
from dltrain.errors import UserError
from dltrain.schema import load_config
from dltrain.train.callbacks import CheckpointWriter
from dltrain.train.interrupt import AgreedStop, StopOnSignal
from dltrain.train.metrics import MetricSums
from dltrain.train.run import build_job

from unit_support import raw

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
            "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "job-7", "TORCHELASTIC_RESTART_COUNT": "2"}
SRUN = {"SLURM_JOB_ID": "123456", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08]",
        "SLURM_JOB_NAME": "train", "SLURM_STEP_ID": "0"}


# ---------------------------------------------------------------------------------------------
# who this process is
def test_torchrun_environment():
    launch = detect(TORCHRUN)
    assert (launch.source, launch.rank, launch.world_size, launch.local_rank) == ("torchrun", 1, 4, 1)
    assert (launch.master_addr, launch.master_port, launch.restart) == ("node0", 29500, 2)
    assert launch.key == "torchrun-job-7" and not launch.is_main


def test_torchrun_without_a_run_id_is_named_by_its_agent():
    launch = detect({**TORCHRUN, "TORCHELASTIC_RUN_ID": "none"})
    assert launch.key.endswith(f"-{os.getppid()}")


def test_srun_environment_as_lightning_reads_it():
    launch = detect(SRUN)
    assert (launch.source, launch.rank, launch.world_size, launch.local_rank) == ("slurm", 5, 8, 1)
    assert launch.master_addr == "gpu07"
    assert launch.master_port == 15000 + 3456  # from the job id, the same on every node
    assert detect({**SRUN, "MASTER_PORT": "1234", "MASTER_ADDR": "h"}).master_port == 1234


@pytest.mark.parametrize("env", [
    {},
    {**SRUN, "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1"},  # one task: a process on its own
    {**SRUN, "SLURM_JOB_NAME": "bash"},  # an interactive allocation, not an srun step
    {"RANK": "0"},  # half a torchrun environment
])
def test_a_process_on_its_own(env):
    assert detect(env) is None


@pytest.mark.parametrize("nodes, first", [
    ("node[003-005,9],gpu1", "node003"), ("gpu1,gpu2", "gpu1"), ("localhost", "localhost"),
    ("a[1,4]", "a1"),
])
def test_first_host_of_a_slurm_node_list(nodes, first):
    assert first_host(nodes) == first


def test_strategy():
    one = detect({**TORCHRUN, "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"})
    assert check_strategy("auto", None) is False
    assert check_strategy("auto", one) is False  # torchrun with one process: plain training
    assert check_strategy("ddp", one) is True  # ... unless DDP is asked for
    assert check_strategy("auto", detect(TORCHRUN)) is True
    with pytest.raises(UserError, match="torchrun --nproc_per_node=N -m dltrain"):
        check_strategy("ddp", None)


def test_schema_names_the_strategies():
    with pytest.raises(UserError, match="auto, ddp"):
        load_config(raw(trainer={"strategy": "fsdp"}))


def test_ddp_processes_take_the_gpu_of_their_local_rank_or_the_cpu():
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")
    with pytest.raises(UserError, match="LOCAL_RANK"):
        resolve_device("cuda:1", local_rank=0)
    if not torch.cuda.is_available():
        assert resolve_device("auto", local_rank=1) == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# splitting batches
@pytest.mark.parametrize("size", [1, 2, 7, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_parts_of_a_batch_cover_it_once(size, world):
    parts = [shard_of(10, 10 + size, rank, world) for rank in range(world)]
    assert parts[0][0] == 10 and parts[-1][1] == 10 + size
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, in rank order
    sizes = [stop - start for start, stop in parts]
    assert max(sizes) - min(sizes) <= 1


def numbered(n: int) -> Split:
    return Split(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n))


@pytest.mark.parametrize("world", [2, 3])
def test_processes_together_see_each_batch_of_one_process(world):
    split, seed = numbered(23), 5

    def batches(shard):
        gen = torch.Generator().manual_seed(seed)
        return [y.tolist() for _, y in iterate(split, 8, shuffle=True, generator=gen,
                                                 min_last=world, shard=shard)]

    parts = [batches((rank, world)) for rank in range(world)]
    whole = batches((0, 1))
    assert [sum((p[i] for p in parts), []) for i in range(len(whole))] == whole


def test_a_last_batch_smaller_than_the_processes_is_dropped_in_training_skipped_in_evaluation():
    assert batch_bounds(9, 4, min_last=2) == [(0, 4), (4, 8)]
    # evaluation keeps every sample: a process whose part of a batch is empty skips it
    got = [[y.tolist() for _, y in iterate(numbered(5), 4, shuffle=False, shard=(rank, 2))]
           for rank in range(2)]
    assert got == [[[0, 1], [4]], [[2, 3]]]


# ---------------------------------------------------------------------------------------------
# adding up
class TwoProcesses:
    """A Dist whose all_reduce adds the sums of another process's MetricSums."""

    distributed, rank, world_size = True, 0, 2

    def __init__(self, other: MetricSums) -> None:
        other._fold(other)
        self.other = [getattr(other, name) for name in other._sums()] + [torch.tensor(float(other.n))]

    def all_reduce(self, tensors):
        for mine, theirs in zip(tensors, self.other):
            mine += theirs


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_metrics_of_two_halves_are_the_metrics_of_the_whole(task):
    k = 3
    info = DataInfo(name="x", kind="table", input_shape=(2,), task=task, num_outputs=k,
                    target_std=(2.0,) * k if task == "regression" else None)
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(10, k, generator=gen)
    y = torch.randint(0, k, (10,), generator=gen) if task == "classification" else torch.randn(10, k, generator=gen)
    loss = lambda o, t: torch.nn.functional.cross_entropy(o, t) if task == "classification" else ((o - t) ** 2).mean()
    whole, first, second = (MetricSums(info, torch.device("cpu")) for _ in range(3))
    whole.add(loss(out[:6], y[:6]), out[:6], y[:6])
    whole.add(loss(out[6:], y[6:]), out[6:], y[6:])
    first.add(loss(out[:3], y[:3]), out[:3], y[:3])
    first.add(loss(out[6:8], y[6:8]), out[6:8], y[6:8])
    second.add(loss(out[3:6], y[3:6]), out[3:6], y[3:6])
    second.add(loss(out[8:], y[8:]), out[8:], y[8:])
    expected = whole.compute("val")
    got = first.compute("val", TwoProcesses(second))
    assert got == pytest.approx(expected, rel=1e-5)
    assert first.compute("val") != pytest.approx(expected)  # not reduced: its own half only


# ---------------------------------------------------------------------------------------------
# what the other processes do not do, and what DDP refuses
def test_only_rank_zero_writes_checkpoints(tmp_path):
    built = []
    CheckpointWriter(tmp_path, lambda: built.append(1) or {"x": 1}, write=False).on_epoch_end(None, {}, True)
    assert built == [1]  # built on every process (it gathers their random states) ...
    assert not (tmp_path / "checkpoints").exists()  # ... written by rank 0 only


def test_a_process_on_its_own_stops_on_its_own_signal():
    stop = StopOnSignal()
    agreed = AgreedStop(stop, Dist())
    assert agreed.requested == 0
    stop.requested = 15
    assert agreed.requested == 15


class FakeLaunch(Dist):
    """A Dist of two processes without a process group: build_job's checks run before any
    collective."""

    def __init__(self) -> None:
        super().__init__(Launch("torchrun", 0, 2, 0, "localhost", 1, "k", 0))


@pytest.mark.parametrize("trainer, message", [
    ({"batch_size": 1}, "trainer.batch_size=1 is the global batch"),
    ({"sync_batchnorm": True}, "trainer.sync_batchnorm=true needs CUDA"),
])
def test_ddp_refuses_what_it_cannot_split_or_run(trainer, message):
    config = load_config(raw(trainer=trainer, regularization={"batch_norm": True}))
    with pytest.raises(UserError, match=message):
        build_job(config, FakeLaunch())


def test_launch_remembers_its_folder_for_a_restart(tmp_path, monkeypatch):
    """Rank 0 of a first attempt records the folder; a restart (trainer.resume=auto) finds it,
    resume=never takes the new one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.distributed, "broadcast_object_list", lambda box, src: None)
    first = Launch("torchrun", 0, 2, 0, "h", 1, "torchrun-abc", 0)
    again = Launch("torchrun", 0, 2, 0, "h", 1, "torchrun-abc", 1)
    assert distributed.agreed_run_dir(first, "outputs/a", resume=True) == "outputs/a"
    assert distributed.agreed_run_dir(again, "outputs/b", resume=True) == "outputs/a"
    assert distributed.agreed_run_dir(again, "outputs/c", resume=False) == "outputs/c"
