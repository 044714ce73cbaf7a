"""Guards found by trying dltrain as a new user: mistakes that must lose nothing."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from .helpers import QUICK_TIMEOUT_S, describe, run_dltrain


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_mistyped_command_gets_a_did_you_mean(tmp_path):
    proc = run_dltrain(["chek"], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 2, describe(proc)
    assert "unknown command 'chek'" in proc.stderr and "did you mean 'check'" in proc.stderr
    assert "KEY=VALUE" in proc.stderr and "Traceback" not in proc.stderr


def test_version_is_dltrains(tmp_path):
    from dltrain import __version__

    proc = run_dltrain(["--version"], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 0 and proc.stdout.strip() == f"dltrain {__version__}", describe(proc)


def test_an_unwritable_run_dir_is_refused_without_traceback(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    proc = run_dltrain([f"hydra.run.dir={tmp_path / 'afile' / 'run'}"], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 2, describe(proc)
    assert "cannot create a folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_folder_that_holds_a_run_is_never_overwritten(default_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(default_run.run_dir, run)
    before = {p.name: digest(p) for p in (run / "checkpoints").iterdir()}
    config = digest(run / ".hydra" / "config.yaml")
    proc = run_dltrain([f"hydra.run.dir={run}", "trainer.epochs=1"], tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "already holds a run" in proc.stderr and "dltrain resume" in proc.stderr
    assert {p.name: digest(p) for p in (run / "checkpoints").iterdir()} == before
    assert digest(run / ".hydra" / "config.yaml") == config


@pytest.mark.slow
def test_a_failed_resume_leaves_the_saved_config_alone(default_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(default_run.run_dir, run)
    config = digest(run / ".hydra" / "config.yaml")
    record = digest(run / "run.yaml")
    # accepted, then fails while building: the folder must not record it
    proc = run_dltrain(["resume", str(run), "trainer.epochs=9", "trainer.device=cuda:99"],
                       tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "cuda:99" in proc.stderr and "Traceback" not in proc.stderr
    assert digest(run / ".hydra" / "config.yaml") == config
    assert digest(run / "run.yaml") == record


def test_an_empty_split_is_an_error_not_a_zero(tmp_path):
    run = tmp_path / "run"
    proc = run_dltrain(["data=synthetic", "data.num_samples=10", "data.num_classes=10",
                        f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "val split is empty" in proc.stderr and "10/0/0" in proc.stderr
    assert not run.exists()


@pytest.mark.slow
def test_eval_with_an_unknown_device_is_a_clear_error(default_run, tmp_path):
    proc = run_dltrain(["eval", str(default_run.run_dir), "--device", "gpu"], tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "--device gpu is not allowed" in proc.stderr and "cpu" in proc.stderr
    assert "Traceback" not in proc.stderr
