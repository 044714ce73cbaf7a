"""Sweeps end with a summary of every job: summary.csv, sweep.png, a table sorted by the
monitored metric (failed jobs last, with their reason) and the replay command of the best job."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from .helpers import (TINY, assert_ok, assert_png, assert_user_error, dltrain, read_csv,
                      read_json, read_yaml, run_together)

pytestmark = pytest.mark.slow

METRICS = ("test_loss", "test_acc", "best_val_loss")
# an Optuna search (configs/hpo/digits_mlp.yaml) for the metric that is maximized
HPO = ["-m", "hpo=digits_mlp", "trainer.monitor=val_acc", "hydra.sweeper.n_trials=3",
       "trainer.epochs=2", *TINY]


@dataclass
class Sweep:
    dir: Path
    proc: subprocess.CompletedProcess
    rows: List[Dict[str, str]]  # summary.csv as the sweep wrote it
    csv_text: str


@dataclass
class Started:
    grids: Dict[str, Sweep]  # "lr", "seeds"
    hpo: Tuple[subprocess.CompletedProcess, Path]  # an Optuna search (HPO)


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> Started:
    """The module's sweeps, started together: each runs its jobs one after the other."""
    cwd = tmp_path_factory.mktemp("sweeps")
    lr_dir, seed_dir, hpo_dir = cwd / "lr", cwd / "seeds", cwd / "hpo"
    lr, seeds, hpo = run_together([
        (["-m", "optim=sgd,adam", "optim.lr=0.01,1e9", "trainer.epochs=1", *TINY,
          f"hydra.sweep.dir={lr_dir}"], cwd),
        (["-m", "trainer.seed=0,1", "optim=sgd,adam", "trainer.epochs=1", *TINY,
          f"hydra.sweep.dir={seed_dir}"], cwd),
        ([*HPO, f"hydra.sweep.dir={hpo_dir}"], cwd),
    ])
    grids = {}
    for name, proc, folder in (("lr", lr, lr_dir), ("seeds", seeds, seed_dir)):
        assert_ok(proc)
        grids[name] = Sweep(folder, proc, read_csv(folder / "summary.csv"),
                            (folder / "summary.csv").read_text())
    return Started(grids, (hpo, hpo_dir))


@pytest.fixture(scope="module")
def sweeps(started) -> Dict[str, Sweep]:
    return started.grids


def table_block(stdout: str) -> List[str]:
    """The summary's lines: from its title to the replay command of the best job."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("sweep "))
    end = next(i for i, line in enumerate(lines) if line.startswith("replay it: "))
    return lines[start:end + 1]


def job_ids(block: List[str]) -> List[str]:
    """The job column of the first table, top to bottom (wrapped cells leave it empty)."""
    ids = []
    for line in block:
        if line.startswith("└"):
            break
        if line.startswith("│") and line.split("│")[1].strip():
            ids.append(line.split("│")[1].strip())
    return ids


def test_every_job_is_listed_with_its_own_numbers(sweeps):
    for sweep in sweeps.values():
        rows = sweep.rows
        assert sorted(row["job"] for row in rows) == ["0", "1", "2", "3"]
        for row in rows:
            job = sweep.dir / row["job"]
            assert Path(row["dir"]) == job
            summary = read_json(job / "summary.json")
            assert row["status"] == summary["status"]
            assert int(row["epochs"]) == summary["epochs_completed"]
            for metric in METRICS:
                if summary.get(metric) is None:
                    assert row[metric] == "", (row, metric)
                else:  # written with full precision: the very same float
                    assert float(row[metric]) == summary[metric], (row, metric)
            config = read_yaml(job / ".hydra" / "config.yaml")
            assert row["optim"] == config["optim"]["name"]
            if "optim.lr" in row:
                assert float(row["optim.lr"]) == config["optim"]["lr"]
            if "trainer.seed" in row:
                assert int(row["trainer.seed"]) == config["trainer"]["seed"]


def test_a_diverging_job_is_recorded_as_failed_and_the_sweep_goes_on(sweeps):
    rows = sweeps["lr"].rows
    diverged = [row for row in rows if row["optim"] == "sgd" and float(row["optim.lr"]) == 1e9]
    assert len(diverged) == 1
    assert diverged[0]["status"] == "failed"
    assert "nan" in diverged[0]["reason"] or "inf" in diverged[0]["reason"]
    for row in rows:
        if row["status"] == "failed":
            assert row["reason"], row
            assert read_json(Path(row["dir"]) / "summary.json")["reason"] == row["reason"]
    assert sum(row["status"] == "completed" for row in rows) >= 2  # the lr=0.01 jobs at least


def test_rows_are_sorted_by_the_monitored_metric_with_failed_jobs_last(sweeps):
    for sweep in sweeps.values():
        statuses = [row["status"] == "failed" for row in sweep.rows]
        assert statuses == sorted(statuses), sweep.rows
        finished = [float(row["best_val_loss"]) for row in sweep.rows if row["status"] != "failed"]
        assert finished == sorted(finished)
        assert all(not math.isnan(v) for v in finished)


def test_the_sweep_names_the_replay_of_the_best_job(sweeps):
    for sweep in sweeps.values():
        best = sweep.rows[0]
        assert best["status"] != "failed"
        stdout = sweep.proc.stdout
        assert f"best job: {best['job']} (best_val_loss = " in stdout
        assert f"replay it: dltrain replay {sweep.dir / best['job']}" in stdout


def test_the_sweep_plot_is_a_png(sweeps):
    for sweep in sweeps.values():
        assert_png(sweep.dir / "sweep.png")


def test_summary_prints_the_same_table_again(sweeps):
    sweep = sweeps["lr"]
    proc = assert_ok(dltrain(["summary", str(sweep.dir)], sweep.dir.parent))
    printed = table_block(sweep.proc.stdout)
    again = table_block(proc.stdout)
    assert job_ids(again) == [row["job"] for row in sweep.rows] == job_ids(printed)
    assert again == printed
    assert (sweep.dir / "summary.csv").read_text() == sweep.csv_text


def test_seed_sweep_shows_mean_and_std_over_seeds(sweeps):
    sweep = sweeps["seeds"]
    lines = sweep.proc.stdout.splitlines()
    start = lines.index("mean ± std over trainer.seed")
    agg = {line.split("│")[1].strip(): line for line in lines[start:] if line.startswith("│ ")}
    assert set(agg) == {"sgd", "adam"}
    for optim, line in agg.items():
        rows = [row for row in sweep.rows if row["optim"] == optim]
        assert sorted(row["trainer.seed"] for row in rows) == ["0", "1"]
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        assert cells[1] == "2"  # seeds
        for metric, cell in zip(METRICS, cells[2:]):
            a, b = (float(row[metric]) for row in rows)
            mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)  # sample std of two values
            assert cell == f"{mean:.4g} ± {std:.2g}", (optim, metric, cell)


def test_hpo_maximizes_val_acc_and_agrees_with_the_best_job(started):
    """Issue 7, item 6: the study's direction follows trainer.monitor, so with val_acc Optuna
    maximizes, and its best value is the best job of dltrain's own summary. The search samples
    configs/hpo/digits_mlp.yaml's space within its bounds."""
    proc, sweep_dir = started.hpo
    assert_ok(proc)
    assert "Directions: ['maximize']" in proc.stdout, proc.stdout
    jobs = {job.name: read_json(job / "summary.json")
            for job in sweep_dir.iterdir() if (job / "summary.json").is_file()}
    for summary in jobs.values():
        assert summary["status"] == "completed" and summary["epochs_completed"] == 2, summary
        assert summary["monitor"] == "val_acc"
    accs = {name: summary["best_val_acc"] for name, summary in jobs.items()}
    assert len(accs) == 3 and len(set(accs.values())) == 3, accs  # else any direction agrees
    results = read_yaml(sweep_dir / "optimization_results.yaml")
    best_job = re.search(r"^best job: (\d+) \(best_val_acc = ", proc.stdout, re.M).group(1)
    assert results["best_value"] == max(accs.values()) == accs[best_job]
    params = results["best_params"]
    assert set(params) == {"optim.lr", "regularization.dropout", "regularization.weight_decay",
                           "trainer.batch_size"}
    assert 1e-4 <= params["optim.lr"] <= 1e-2 and params["trainer.batch_size"] in (32, 64, 128)
    config = read_yaml(sweep_dir / best_job / ".hydra" / "config.yaml")
    assert config["optim"]["lr"] == pytest.approx(params["optim.lr"], rel=1e-12)


@pytest.mark.parametrize("monitor, direction", [("val_loss", "minimize"), ("val_acc", "maximize")])
def test_hpo_direction_follows_the_monitor(monitor, direction):
    """The direction configs/hpo/*.yaml hand the sweeper, composed without a search: that the
    study takes it is shown by the real search above."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dltrain import hpo, schema
    from dltrain.launch import config_dir

    schema.register_configs()
    OmegaConf.register_new_resolver(hpo.RESOLVER, hpo.direction, replace=True)
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hpo=digits_mlp", f"trainer.monitor={monitor}"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == direction


def test_hpo_refuses_a_direction_against_the_monitor(tmp_path):
    """Issue 7, item 6: a hand-set direction that would search for worse models is refused
    before any job runs."""
    sweep_dir = tmp_path / "hpo"
    proc = dltrain([*HPO, "hydra.sweeper.direction=minimize", f"hydra.sweep.dir={sweep_dir}"],
                   tmp_path)
    assert_user_error(proc, "hydra.sweeper.direction=minimize contradicts trainer.monitor=val_acc")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not sweep_dir.exists()
