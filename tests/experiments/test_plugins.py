"""Hydra's joblib launcher runs dltrain jobs (the ``sweeps`` extra). The Optuna sweeper's search
is test_sweeps' (test_hpo_maximizes_val_acc_and_agrees_with_the_best_job)."""

from __future__ import annotations

import pytest

from .helpers import TINY, assert_ok, dltrain, read_json, read_yaml

pytestmark = pytest.mark.slow


def test_joblib_runs_the_jobs(tmp_path):
    sweep = tmp_path / "joblib"
    assert_ok(dltrain(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim=sgd,adam",
                       "trainer.epochs=1", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path))
    assert sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir()) == ["0", "1"]
    optimizers = set()
    for job in ("0", "1"):
        assert read_json(sweep / job / "summary.json")["status"] == "completed"
        optimizers.add(read_yaml(sweep / job / ".hydra" / "config.yaml")["optim"]["name"])
    assert optimizers == {"sgd", "adam"}
    assert (sweep / "summary.csv").is_file()
