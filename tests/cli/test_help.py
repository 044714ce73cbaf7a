"""``dltrain --help`` lists every config group and option, and answers without importing torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import CONFIGS, QUICK_TIMEOUT_S, cli_env, describe, dltrain_cmd

# groups a user chooses an option of (trainer has a single file, default.yaml, and no choice)
# configs/hydra/ holds presets of Hydra's own groups (hydra/launcher=slurm), not dltrain's
CHOICE_GROUPS = sorted(p.name for p in CONFIGS.iterdir()
                       if p.is_dir() and p.name not in ("trainer", "hydra"))


def console_script() -> str:
    """The installed ``dltrain`` script beside this interpreter (or else on PATH)."""
    beside = Path(sys.executable).with_name("dltrain")
    found = str(beside) if beside.is_file() else shutil.which("dltrain")
    assert found, "the dltrain console script is not installed"
    return found


def run(cmd, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True,
                          timeout=QUICK_TIMEOUT_S)


@pytest.fixture(scope="module")
def help_text(tmp_path_factory) -> str:
    cwd = tmp_path_factory.mktemp("help")
    proc = run([console_script(), "--help"], cwd)
    assert proc.returncode == 0, describe(proc)
    assert list(cwd.iterdir()) == [], "--help wrote files"
    return proc.stdout


def test_choice_groups_are_found():
    assert {"model", "optim", "data", "loss", "sched", "activation", "regularization"} <= set(CHOICE_GROUPS)


@pytest.mark.parametrize("group", CHOICE_GROUPS)
def test_help_lists_each_group_with_all_its_options(help_text, group):
    options = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))
    lines = [line for line in help_text.splitlines() if line.split()[:1] == [group]]
    assert len(lines) == 1, f"no single line for group {group!r} in:\n{help_text}"
    listed = {name.strip() for name in lines[0].split(None, 1)[1].split(",")}
    assert listed == set(options)


def test_help_shows_usage_and_a_sweep_example(help_text):
    assert "usage" in help_text.lower()
    assert "dltrain -m" in help_text


def test_python_m_dltrain_matches_the_console_script(tmp_path, help_text):
    proc = run(dltrain_cmd("--help"), tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == help_text


def test_help_does_not_import_torch(tmp_path):
    # -X importtime lists every module imported, one per line: "import time: self | cumulative | name"
    proc = run([sys.executable, "-X", "importtime", "-m", "dltrain", "--help"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "dltrain.cli" in imported, "importtime output not understood"
    torch_modules = [name for name in imported if name == "torch" or name.startswith("torch.")]
    assert not torch_modules, f"--help imported {torch_modules[:5]}"
