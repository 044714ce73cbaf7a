"""Data-parallel training over several processes started by torchrun or srun.

dltrain starts no processes of its own: a launcher (``torchrun``, ``srun``, Hydra's submitit
launcher) starts one per device and tells each who it is through the environment.
:func:`detect` reads that, :func:`connect` joins the process group, and :class:`Dist` is the
little a training job needs from the other processes: sums of metrics, the same decision to stop,
rank 0's weights. A single process has a ``Dist`` too, whose collectives do nothing.

torch is imported when a process group is joined, not when a launch is detected, so that the
command line can decide the run folder before anything heavy is loaded.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional

from dltrain.errors import UserError

# where a launch remembers its run folder, so that a restarted job (torchrun --max-restarts, a
# SLURM requeue) finds the folder of its first attempt: outputs/.launches/<launch key>
LAUNCHES = Path("outputs") / ".launches"


@dataclass(frozen=True)
class Launch:
    """What the launcher told this process."""

    source: str  # torchrun | slurm
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    key: str  # the same on every process of the job and across its restarts
    restart: int  # 0 on the first attempt; counts the launcher's restarts of the job

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(env: Mapping[str, str] = os.environ) -> Optional[Launch]:
    """The launch this process belongs to: torchrun (its ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), an ``srun`` step of several tasks (as
    Lightning's SLURMEnvironment reads it), or ``None`` for a process on its own."""
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")):
        run_id = env.get("TORCHELASTIC_RUN_ID", "none")
        # torchrun's default rendezvous id is a fresh uuid; with a static --rdzv-id left at
        # "none", the agent (the workers' parent) stands for the launch on this host
        key = run_id if run_id != "none" else f"{socket.gethostname()}-{os.getppid()}"
        return Launch("torchrun", int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]),
                      env["MASTER_ADDR"], int(env["MASTER_PORT"]), f"torchrun-{key}",
                      int(env.get("TORCHELASTIC_RESTART_COUNT", 0)))
    tasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
    if "SLURM_PROCID" in env and int(tasks) > 1 and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        job = env.get("SLURM_JOB_ID", "0")
        return Launch("slurm", int(env["SLURM_PROCID"]), int(tasks), int(env.get("SLURM_LOCALID", 0)),
                      env.get("MASTER_ADDR") or first_host(env.get("SLURM_NODELIST", "127.0.0.1")),
                      int(env.get("MASTER_PORT") or 15000 + int(job[-4:] or 0) % 20000),
                      f"slurm-{job}-{env.get('SLURM_STEP_ID', '0')}",
                      int(env.get("SLURM_RESTART_COUNT", 0)))
    return None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``node[003-005,9],gpu1`` → ``node003``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        return nodelist
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def check_strategy(strategy: str, launch: Optional[Launch]) -> bool:
    """Whether to train data-parallel: under a launch of several processes (``auto``), or under
    any launch when ``trainer.strategy=ddp``; ``ddp`` alone is a mistake with a remedy."""
    if strategy == "ddp" and launch is None:
        raise UserError("trainer.strategy=ddp needs a launcher that starts the processes: "
                        "torchrun --nproc_per_node=N -m dltrain ... (or srun on SLURM); "
                        "trainer.strategy=auto trains in this one process")
    return launch is not None and (strategy == "ddp" or launch.world_size > 1)


# ---------------------------------------------------------------------------------------------
# one run folder for the whole job
def agreed_run_dir(launch: Launch, proposed: str, *, resume: bool) -> str:
    """The run folder of the job: rank 0's ``proposed`` folder, or, when the launcher restarted
    the job and ``trainer.resume=auto``, the folder its first attempt trained in. Every process
    gets rank 0's answer (a collective: the process group must be joined)."""
    import torch.distributed as dist

    folder = [None]
    if launch.is_main:
        marker = LAUNCHES / launch.key
        folder[0] = proposed
        if launch.restart and resume and marker.is_file():
            folder[0] = marker.read_text().strip()
        else:
            from dltrain.atomic import atomic_write_text

            atomic_write_text(marker, f"{proposed}\n")
    dist.broadcast_object_list(folder, src=0)
    return str(folder[0])


def forget(launch: Optional[Launch]) -> None:
    """A job that ended (not one interrupted or crashed, which its launcher may restart) needs
    its folder no more. Nothing for a process on its own (``None``)."""
    if launch is not None and launch.is_main:
        (LAUNCHES / launch.key).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the process group
def connect(launch: Launch, device_type: str) -> None:
    """Join the job's process group once per process: NCCL between CUDA devices, gloo between
    CPUs. A second call (the command line joined it to agree on the folder) does nothing."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    timeout = datetime.timedelta(minutes=10)
    # torchrun's agent serves the store; under srun rank 0 does. Each attempt of an elastic job
    # keeps its keys apart: a restarted process that read the addresses its predecessors left
    # in the agent's store would try to connect to processes that are gone
    agent_store = launch.source == "torchrun" and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.PrefixStore(f"dltrain/attempt_{launch.restart}", dist.TCPStore(
        launch.master_addr, launch.master_port, launch.world_size,
        is_master=launch.is_main and not agent_store, timeout=timeout))
    backend = "nccl" if device_type == "cuda" else "gloo"
    kwargs: dict = {}
    if device_type == "cuda":
        import torch

        torch.cuda.set_device(launch.local_rank)
        kwargs["device_id"] = torch.device("cuda", launch.local_rank)
    dist.init_process_group(backend, store=store, rank=launch.rank, world_size=launch.world_size,
                            timeout=timeout, **kwargs)


def disconnect() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Dist:
    """This process's part in a job: rank, world size, and the collectives training needs.
    ``Dist()`` is a process on its own: every collective returns at once."""

    def __init__(self, launch: Optional[Launch] = None) -> None:
        self.launch = launch
        self.rank = launch.rank if launch else 0
        self.world_size = launch.world_size if launch else 1
        self._control: Any = None  # a gloo group for the stop vote, off the device's stream
        self._vote: Any = None  # the vote in flight: (work, tensor)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.launch is not None

    def all_reduce(self, tensors: List[Any]) -> None:
        """Sum each tensor over the processes, in place: one collective for all of them."""
        if not self.distributed or not tensors:
            return
        import torch
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])  # counts stay exact
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), in every process."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> List[Any]:
        """Every process's ``obj``, in rank order."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered: List[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast_module(self, module: Any) -> None:
        """Rank 0's parameters and buffers into every process's ``module``."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def agree_to_stop(self, requested: int) -> int:
        """The same answer on every process to "stop now?": each step votes its local signal
        flag and reads the previous step's vote, which has long arrived, so no step waits on it.
        Returns the signal number (the largest asked for) or 0."""
        if not self.distributed:
            return requested
        import torch
        import torch.distributed as dist

        if self._control is None:
            self._control = dist.new_group(backend="gloo")
        decided = 0
        if self._vote is not None:
            work, flag = self._vote
            work.wait()
            decided = int(flag.item())
        flag = torch.tensor([requested], dtype=torch.int32)
        self._vote = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._control,
                                      async_op=True), flag)
        return decided

    def end_votes(self) -> None:
        """Wait for the vote in flight: every process cast it, so it completes."""
        if self._vote is not None:
            self._vote[0].wait()
            self._vote = None

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
