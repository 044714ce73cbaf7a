"""Sweeps through Hydra's submitit launcher: the shipped ``hydra/launcher=slurm`` preset
(configs/hydra/launcher/slurm.yaml) and the plugin's ``hydra/launcher=submitit_local``, which runs
the same path on one machine: each job a process of its own, started from a pickle, its output
in SWEEP/.submitit/, and dltrain's sweep summary when the last job ends."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dltrain import schema
from dltrain.launch import config_dir

from .helpers import (TINY, assert_ok, cli_env, describe, dltrain, dltrain_cmd, read_csv,
                      read_json, read_yaml)

PRESET = config_dir() / "hydra" / "launcher" / "slurm.yaml"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LRS = ("0.01", "0.02")


# ---------------------------------------------------------------------------------------------
# the preset, without a cluster and without training
@pytest.fixture(scope="module")
def compose_hydra():
    schema.register_configs()
    OmegaConf.register_new_resolver("dltrain_uid", lambda: "x", replace=True)
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=list(overrides),
                                        return_hydra_config=True)


def test_slurm_preset_composes_under_hydra_launcher(compose_hydra, tmp_path):
    cfg = compose_hydra(["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER  # extends the plugin's submitit_slurm
    # every value the preset sets arrives under hydra.launcher, the rest are the plugin's keys
    values = OmegaConf.to_container(OmegaConf.load(PRESET))
    assert values.pop("defaults") == ["submitit_slurm"]
    assert {"partition", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb",
            "timeout_min", "nodes", "additional_parameters", "submitit_folder"} <= set(values)
    unresolved = OmegaConf.to_container(launcher, resolve=False)
    for key, value in values.items():
        assert unresolved[key] == value, key
    assert {"qos", "account", "constraint", "setup", "max_num_timeout"} <= set(unresolved)
    assert launcher.submitit_folder == f"{tmp_path}/.submitit/%j"  # inside the sweep folder

    cfg = compose_hydra(["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.gpus_per_node=2",
                         "+hydra.launcher.additional_parameters.mail-type=END"])
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.gpus_per_node) == ("gpu", 2)
    assert cfg.hydra.launcher.additional_parameters == {"mail-type": "END"}


@pytest.mark.skipif(os.name == "nt", reason="the stand-ins for sbatch and srun are sh scripts")
def test_slurm_preset_reaches_sbatch(tmp_path):
    """A stand-in ``sbatch`` keeps the script submitit writes and refuses it, so the sweep stops
    right after submitting, before any job runs."""
    bin_dir, script = tmp_path / "bin", tmp_path / "job.sh"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{script}"\n'
                                    'echo "sbatch: error: a stand-in for the test" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit checks that srun exists
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = {**cli_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
            "+hydra.launcher.additional_parameters.mail-type=END", "model=mlp,cnn",
            f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(dltrain_cmd(*args), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "a stand-in for the test" in proc.stderr, describe(proc)
    sbatch = set(script.read_text().splitlines())
    for option in ("--array=0-1%2", "--partition=gpu", "--gpus-per-node=1", "--ntasks-per-node=1",
                   "--cpus-per-task=4", "--mem=16GB", "--time=60", "--nodes=1",
                   "--job-name=dltrain", "--mail-type=END",
                   f"--output={sweep_dir}/.submitit/%A_%a/%A_%a_0_log.out"):
        assert f"#SBATCH {option}" in sbatch, f"{option} missing from\n{script.read_text()}"


# ---------------------------------------------------------------------------------------------
# a sweep of two jobs through submitit_local
@dataclass
class LocalSweep:
    dir: Path
    proc: subprocess.CompletedProcess
    rows: list[dict[str, str]]  # summary.csv


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> LocalSweep:
    cwd = tmp_path_factory.mktemp("submitit")
    sweep_dir = cwd / "sweep"
    proc = assert_ok(dltrain(["-m", "hydra/launcher=submitit_local", f"optim.lr={','.join(LRS)}",
                              "trainer.epochs=1", *TINY, f"hydra.sweep.dir={sweep_dir}"], cwd))
    return LocalSweep(sweep_dir, proc, read_csv(sweep_dir / "summary.csv"))


@pytest.mark.slow
def test_submitit_local_runs_both_jobs(local_sweep):
    for job in ("0", "1"):
        summary = read_json(local_sweep.dir / job / "summary.json")
        assert summary["status"] == "completed" and summary["epochs_completed"] == 1, summary
    # each job ran in a submitit process of its own, which kept what dltrain printed
    logs = sorted(local_sweep.dir.glob(".submitit/*/*_0_log.out"))
    assert len(logs) == 2, logs
    assert all("mlp on digits" in log.read_text() for log in logs)


@pytest.mark.slow
def test_submitit_local_sweep_is_summarized(local_sweep):
    rows = local_sweep.rows
    assert sorted((row["job"], row["optim.lr"]) for row in rows) == [("0", LRS[0]), ("1", LRS[1])]
    for row in rows:
        config = read_yaml(local_sweep.dir / row["job"] / ".hydra" / "config.yaml")
        assert float(row["optim.lr"]) == config["optim"]["lr"]
        assert row["status"] == "completed"
    # summary.csv is sorted best first, and the printed table names that job (.submitit/, a
    # folder without .hydra/, is not taken for a job)
    best = rows[0]
    assert float(best["best_val_loss"]) == min(float(row["best_val_loss"]) for row in rows)
    stdout = local_sweep.proc.stdout
    assert "(2 jobs, sorted by best_val_loss, min)" in stdout, describe(local_sweep.proc)
    assert re.search(rf"^best job: {best['job']} \(best_val_loss = ", stdout, re.MULTILINE), stdout
    assert f"replay it: dltrain replay {local_sweep.dir / best['job']}" in stdout


@pytest.mark.slow
def test_submitit_job_records_the_sweep_command(local_sweep):
    command = read_yaml(local_sweep.dir / "0" / "run.yaml")["command"]
    assert command.startswith("dltrain -m hydra/launcher=submitit_local"), command
