"""Hydra's Optuna sweeper and joblib launcher run dltrain jobs (the ``sweeps`` extra)."""

from __future__ import annotations

import pytest

from .helpers import TINY, assert_ok, read_json, read_yaml, run_together

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plugin_sweeps(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("plugins")
    optuna_dir, joblib_dir = cwd / "optuna", cwd / "joblib"
    optuna, joblib = run_together([
        (["-m", "hpo=digits_mlp", "hydra.sweeper.n_trials=2", "trainer.epochs=1", *TINY,
          f"hydra.sweep.dir={optuna_dir}"], cwd),
        (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim=sgd,adam",
          "trainer.epochs=1", *TINY, f"hydra.sweep.dir={joblib_dir}"], cwd),
    ])
    return {"optuna": (assert_ok(optuna), optuna_dir), "joblib": (assert_ok(joblib), joblib_dir)}


def job_folders(sweep_dir):
    return sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def test_optuna_search_minimizes_the_best_validation_loss(plugin_sweeps):
    _, sweep = plugin_sweeps["optuna"]
    assert job_folders(sweep) == ["0", "1"]
    best_losses = []
    for job in ("0", "1"):
        summary = read_json(sweep / job / "summary.json")
        assert summary["status"] == "completed" and summary["epochs_completed"] == 1
        assert summary["monitor"] == "val_loss"
        best_losses.append(summary["best_val_loss"])
    results = read_yaml(sweep / "optimization_results.yaml")
    assert results["best_value"] == pytest.approx(min(best_losses), rel=1e-12)
    # the search space of configs/hpo/digits_mlp.yaml was sampled, within its bounds
    params = results["best_params"]
    assert set(params) == {"optim.lr", "regularization.dropout", "regularization.weight_decay",
                           "trainer.batch_size"}
    assert 1e-4 <= params["optim.lr"] <= 1e-2 and params["trainer.batch_size"] in (32, 64, 128)
    best_job = best_losses.index(min(best_losses))
    config = read_yaml(sweep / str(best_job) / ".hydra" / "config.yaml")
    assert config["optim"]["lr"] == pytest.approx(params["optim.lr"], rel=1e-12)


def test_joblib_runs_the_jobs(plugin_sweeps):
    _, sweep = plugin_sweeps["joblib"]
    assert job_folders(sweep) == ["0", "1"]
    optimizers = set()
    for job in ("0", "1"):
        assert read_json(sweep / job / "summary.json")["status"] == "completed"
        optimizers.add(read_yaml(sweep / job / ".hydra" / "config.yaml")["optim"]["name"])
    assert optimizers == {"sgd", "adam"}
    assert (sweep / "summary.csv").is_file()
