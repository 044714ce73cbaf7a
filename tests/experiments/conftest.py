"""The runs that several experiment tests inspect, made once per session.

The runs that tests only read (``trained``) are trained in this process: the command that trains
is tested where it is the subject (test_sweeps, test_signals, test_ddp, tests/cli). What
``second_wave`` runs from the finished dropout run is under test: the replays go through
Hydra's command line, in subprocesses started together; the resume runs here, through the
command's own entry point, while they import torch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest

from .helpers import (DROPOUT, EPOCHS, EXTENDED, REPLAY_LR, TINY, assert_ok, dltrain_here,
                      finish, load_weights, new_run_folders, read_csv, read_json, read_yaml,
                      start, train_here)


@dataclass
class FinishedRun:
    run_dir: Path
    stdout: str  # what training printed


@dataclass
class Trained:
    dropout: FinishedRun  # EPOCHS epochs: replayed, evaluated, copied and resumed
    straight: FinishedRun  # the same config for EXTENDED epochs in one go, logger=tensorboard
    regression: FinishedRun  # data=diabetes, 2 epochs


def trained_run(overrides: List[str], run_dir: Path) -> FinishedRun:
    return FinishedRun(run_dir, train_here(overrides, run_dir))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    cwd = tmp_path_factory.mktemp("trained")
    return Trained(
        dropout=trained_run([*DROPOUT, f"trainer.epochs={EPOCHS}"], cwd / "dropout"),
        # TensorBoard only adds files: the straight run must still match the resumed one
        straight=trained_run([*DROPOUT, f"trainer.epochs={EXTENDED}", "logger=tensorboard"],
                             cwd / "straight"),
        regression=trained_run([*TINY, "data=diabetes", "trainer.epochs=2"], cwd / "regression"),
    )


@pytest.fixture(scope="session")
def dropout_run(trained: Trained) -> FinishedRun:
    return trained.dropout


@dataclass
class Snapshot:
    """What a run folder held right after the fixture's commands (later tests may resume it)."""

    metrics: List[Dict[str, str]]
    weights: dict
    summary: dict
    record: dict
    config: dict


def snapshot(run_dir: Path) -> Snapshot:
    return Snapshot(
        metrics=read_csv(run_dir / "metrics.csv"),
        weights=load_weights(run_dir / "checkpoints" / "last.pt")["model"],
        summary=read_json(run_dir / "summary.json"),
        record=read_yaml(run_dir / "run.yaml"),
        config=read_yaml(run_dir / ".hydra" / "config.yaml"),
    )


@dataclass
class ResumedPair:
    resumed_dir: Path  # a copy of the dropout run (EPOCHS epochs), resumed to EXTENDED
    straight_dir: Path  # EXTENDED epochs in one go
    resumed: Snapshot
    straight: Snapshot
    resume_stdout: str
    cwd: Path


@dataclass
class Replays:
    plain: Path  # dltrain replay RUN
    hydra: Path  # dltrain --config-path RUN/.hydra --config-name config hydra.run.dir=...
    new_lr: Path  # dltrain replay RUN optim.lr=REPLAY_LR
    plain_stdout: str


@dataclass
class SecondWave:
    resumed: ResumedPair
    replays: Replays


@pytest.fixture(scope="session")
def second_wave(trained: Trained, tmp_path_factory) -> SecondWave:
    run = trained.dropout.run_dir
    resume_cwd = tmp_path_factory.mktemp("resume")
    resumed = resume_cwd / "resumed"
    # a run that stopped at an epoch boundary; the copy leaves the shared dropout run as it is
    shutil.copytree(run, resumed)
    # replays without hydra.run.dir land in cwd/outputs/DATE/TIME-ID: one cwd each
    plain_cwd, hydra_cwd, lr_cwd = (tmp_path_factory.mktemp(name)
                                    for name in ("replay", "replay_hydra", "replay_lr"))
    hydra_dir = hydra_cwd / "run"
    procs = [start(args, cwd) for args, cwd in (
        (["replay", str(run)], plain_cwd),
        (["--config-path", str(run / ".hydra"), "--config-name", "config",
          f"hydra.run.dir={hydra_dir}"], hydra_cwd),
        (["replay", str(run), f"optim.lr={REPLAY_LR}"], lr_cwd),
    )]
    try:
        resume = assert_ok(dltrain_here(["resume", str(resumed), f"trainer.epochs={EXTENDED}"],
                                        resume_cwd))
    finally:
        plain, hydra, new_lr = (finish(p) for p in procs)
    for proc in (plain, hydra, new_lr):
        assert_ok(proc)
    folders = []
    for cwd in (plain_cwd, lr_cwd):
        found = new_run_folders(cwd)
        assert len(found) == 1, f"expected one new run folder under {cwd}/outputs, found {found}"
        folders.append(found[0])
    pair = ResumedPair(resumed, trained.straight.run_dir, snapshot(resumed),
                       snapshot(trained.straight.run_dir), resume.stdout, resume_cwd)
    return SecondWave(pair, Replays(folders[0], hydra_dir, folders[1], plain.stdout))


@pytest.fixture(scope="session")
def resumed_pair(second_wave: SecondWave) -> ResumedPair:
    return second_wave.resumed


@pytest.fixture(scope="session")
def replays(second_wave: SecondWave) -> Replays:
    return second_wave.replays
