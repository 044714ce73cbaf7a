"""A ``dltrain`` process with a fault planted, for the DDP tests: run under torchrun as
``ddp_faults.py FAULT [OVERRIDES]``.

FAULT is ``raise@RANK:STEP`` (that rank raises an error in that training step) or
``crash-once@RANK:STEP`` (the same, on the launcher's first attempt only: a restarted job then
trains on). Everything else is the real ``dltrain`` command line.
"""

from __future__ import annotations

import os
import sys

from dltrain import cli
from dltrain.train import loop


def plant(fault: str) -> None:
    kind, _, where = fault.partition("@")
    rank, step = (int(part) for part in where.split(":"))
    if int(os.environ["RANK"]) != rank:
        return
    if kind == "crash-once" and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0:
        return
    real = loop.train_step

    def failing(job, *args, **kwargs):
        if job.state.step + 1 == step:
            raise RuntimeError(f"planted fault in rank {rank} at step {step}")
        return real(job, *args, **kwargs)

    loop.train_step = failing


if __name__ == "__main__":
    plant(sys.argv[1])
    cli.main(sys.argv[2:])
