"""The runs that several experiment tests inspect, trained once per session.

Each ``dltrain`` subprocess spends seconds importing torch, so runs are shared between the tests
that inspect them, and independent commands start together, in two waves: the first trains from
scratch, the second starts from the finished dropout run (replays and a resume).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest

from .helpers import (DROPOUT, EPOCHS, EXTENDED, REPLAY_LR, TINY, assert_ok, load_weights,
                      new_run_folders, read_csv, read_json, read_yaml, run_together)


@dataclass
class FinishedRun:
    proc: subprocess.CompletedProcess
    run_dir: Path


@dataclass
class Trained:
    dropout: FinishedRun  # EPOCHS epochs: replayed, evaluated, copied and resumed
    straight: FinishedRun  # the same config for EXTENDED epochs in one go, logger=tensorboard
    regression: FinishedRun  # data=diabetes, 2 epochs


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    cwd = tmp_path_factory.mktemp("trained")
    dirs = {name: cwd / name for name in ("dropout", "straight", "regression")}
    procs = run_together([
        ([*DROPOUT, f"trainer.epochs={EPOCHS}", f"hydra.run.dir={dirs['dropout']}"], cwd),
        # TensorBoard only adds files: the straight run must still match the resumed one
        ([*DROPOUT, f"trainer.epochs={EXTENDED}", "logger=tensorboard",
          f"hydra.run.dir={dirs['straight']}"], cwd),
        ([*TINY, "data=diabetes", "trainer.epochs=2", f"hydra.run.dir={dirs['regression']}"], cwd),
    ])
    return Trained(*(FinishedRun(assert_ok(proc), run_dir)
                     for proc, run_dir in zip(procs, dirs.values())))


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
    resume, plain, hydra, new_lr = run_together([
        (["resume", str(resumed), f"trainer.epochs={EXTENDED}"], resume_cwd),
        (["replay", str(run)], plain_cwd),
        (["--config-path", str(run / ".hydra"), "--config-name", "config",
          f"hydra.run.dir={hydra_dir}"], hydra_cwd),
        (["replay", str(run), f"optim.lr={REPLAY_LR}"], lr_cwd),
    ])
    for proc in (resume, plain, hydra, new_lr):
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
