"""``dltrain export`` on a real run, as a user types it: onnx, then safetensors, then pt2 into the
run's export/ folder, one MODEL.md describing all three; and the one-line refusals.

Each format's numbers are checked against the PyTorch model in tests/unit/test_export.py; here
the command, its files and its card are. The command runs in this process, through its entry
point (``cli.main``), on a copy of the session's digits run: a process of its own would only add
seconds of importing torch to each export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from .helpers import assert_ok, assert_user_error, dltrain_here, read_json

pytestmark = pytest.mark.slow

FORMATS = ("onnx", "safetensors", "pt2")


@dataclass
class Exported:
    run_dir: Path
    procs: Dict[str, subprocess.CompletedProcess]  # format -> its export command


@pytest.fixture(scope="module")
def exported(dropout_run, tmp_path_factory) -> Exported:
    cwd = tmp_path_factory.mktemp("export")
    run_dir = cwd / "run"
    shutil.copytree(dropout_run.run_dir, run_dir)  # the shared run stays without export/
    # one after the other, as a user would: each rewrites the same MODEL.md
    procs = {fmt: dltrain_here(["export", str(run_dir), "--format", fmt], cwd) for fmt in FORMATS}
    return Exported(run_dir, procs)


def test_each_format_exports_and_checks_itself(exported):
    folder = exported.run_dir / "export"
    for proc in exported.procs.values():
        assert_ok(proc)
        assert "checked:" in proc.stdout and f"wrote {folder / 'MODEL.md'}" in proc.stdout, proc.stdout
    assert sorted(p.name for p in folder.iterdir()) == [
        "MODEL.md", "model.json", "model.onnx", "model.pt2", "model.safetensors"]
    assert "max difference" in exported.procs["onnx"].stdout


def test_the_card_describes_the_model_and_every_export(exported):
    text = (exported.run_dir / "export" / "MODEL.md").read_text()
    summary = read_json(exported.run_dir / "summary.json")
    assert f"| test_acc | {summary['test_acc']:.4g} |" in text
    assert "## Input" in text and "`input`: float32, shape (N, 1, 8, 8)" in text
    assert "## Output" in text and "`probabilities`: float32, shape (N, 10)" in text
    assert "sha256:" in text  # the data fingerprint from run.yaml
    for snippet in ('ort.InferenceSession("model.onnx")', 'load_exported("model.safetensors")',
                    'torch.export.load("model.pt2")'):
        assert snippet in text
    described = json.loads((exported.run_dir / "export" / "model.json").read_text())
    assert described["data_info"]["class_names"] == [str(i) for i in range(10)]


def test_unknown_formats_and_torchscript_are_one_line_errors(exported, tmp_path):
    run = str(exported.run_dir)
    torchscript, foo, missing = (dltrain_here(args, tmp_path) for args in (
        ["export", run, "--format", "torchscript"],
        ["export", run, "--format", "foo"],
        ["export", str(tmp_path / "nothing")],
    ))
    assert_user_error(torchscript, "TorchScript is deprecated", "--format pt2")
    assert_user_error(foo, "--format foo is not known; known: onnx, safetensors, pt2")
    assert_user_error(missing, "no run folder or checkpoint at")
    for proc in (torchscript, foo, missing):
        assert proc.stderr.count("\n") == 1, proc.stderr
