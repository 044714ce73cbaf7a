"""Where runs land: one folder per sweep job, and never one folder for two runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import (
    TRAIN_TIMEOUT_S,
    cli_env,
    describe,
    dltrain_cmd,
    read_csv,
    read_json,
    run_dltrain,
)

pytestmark = pytest.mark.slow

TINY = ["trainer.epochs=1", "model.hidden_sizes=[16]"]


def test_multirun_trains_one_job_per_optimizer(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_dltrain(["-m", "optim=sgd,adam,rmsprop", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, describe(proc)

    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    optimizers = []
    for job in jobs:
        summary = read_json(job / "summary.json")
        assert summary["status"] == "completed", job
        assert summary["epochs_completed"] == 1
        assert (job / "checkpoints" / "last.pt").is_file()
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["trainer"]["epochs"] == 1 and config["model"]["hidden_sizes"] == [16]
        optimizers.append(config["optim"]["name"])
    assert sorted(optimizers) == ["adam", "rmsprop", "sgd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


def test_two_runs_started_together_get_separate_folders(tmp_path):
    # no hydra.run.dir: both land under tmp_path/outputs/DATE/TIME-ID, very likely in one second
    procs = [subprocess.Popen(dltrain_cmd(*TINY), cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TRAIN_TIMEOUT_S)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for result in results:
        assert result.returncode == 0, describe(result)

    summaries = sorted((tmp_path / "outputs").glob("*/*/summary.json"))
    assert len(summaries) == 2, f"expected two run folders, found {summaries}"
    folders = {s.parent for s in summaries}
    assert len(folders) == 2
    # each process reports the folder it wrote
    reported = set()
    for result in results:
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("run folder: ")]
        assert len(lines) == 1, describe(result)
        reported.add(Path(lines[0][len("run folder: "):]).resolve())
    assert reported == {f.resolve() for f in folders}
    for folder in folders:  # one epoch each: no run wrote into the other's folder
        assert len(read_csv(folder / "metrics.csv")) == 1
