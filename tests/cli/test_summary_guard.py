"""Issue 12: ``dltrain summary DIR`` on a folder that is not a sweep refuses it in one line, and
writes no summary.csv or sweep.png into it (it used to rank a diabetes regression against digits
classifiers in the user's working folder)."""

from __future__ import annotations

import json

import yaml

from .helpers import QUICK_TIMEOUT_S, describe, run_dltrain


def single_run(path, data: str, loss: float) -> None:
    """A run folder as a single (not multirun) dltrain run leaves it."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"name": data}}))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"data={data}"]))
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "RUN"}}))
    (path / "summary.json").write_text(json.dumps(
        {"status": "completed", "best_val_loss": loss, "monitor": "val_loss", "mode": "min"}))


def test_summary_refuses_a_folder_of_single_runs_and_writes_nothing(tmp_path):
    single_run(tmp_path / "diabetes", "diabetes", 3000.0)
    single_run(tmp_path / "digits", "digits", 0.2)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_dltrain(["summary", "."], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip() == ("error: . is not a sweep folder: it holds no multirun.yaml and "
                                   "no sweep jobs (a sweep's folder is "
                                   "outputs/multirun/DATE/TIME-ID)"), describe(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no summary.csv, sweep.png
