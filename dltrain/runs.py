"""The run folder: metrics.csv, checkpoints/ and summary.json beside Hydra's .hydra/."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List

from dltrain.atomic import atomic_write_text

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def write_metrics(path: Path, history: List[Dict[str, float]]) -> None:
    """Rewrite metrics.csv whole (atomically) so it always matches the last checkpoint."""
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: int(v) if k == "epoch" else repr(float(v)) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> List[Dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_json(path: Path, data: Dict[str, Any]) -> None:
    def clean(v: Any) -> Any:  # JSON has no NaN: write null rather than invalid JSON
        return None if isinstance(v, float) and not math.isfinite(v) else v

    atomic_write_text(path, json.dumps({k: clean(v) for k, v in data.items()}, indent=2) + "\n")


RECORD = "run.yaml"


def git_state(cwd: Path) -> Dict[str, Any] | None:
    """Commit and dirty flag of the git checkout at ``cwd``, or None outside one."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None


def write_record(root: Path, *, seed: int, device: str, versions: Dict[str, str],
                 command: List[str], event: Dict[str, Any] | None = None) -> None:
    """run.yaml: how this run came to be (seed, command, versions, device, git state).

    A resumed run keeps its original record and appends one entry per resume to ``resumes``.
    """
    import datetime
    import os
    import shlex

    import yaml

    path = Path(root) / RECORD
    now = datetime.datetime.now().isoformat(timespec="seconds")
    if event is not None and path.exists():
        record = yaml.safe_load(path.read_text()) or {}
        record.setdefault("resumes", []).append({"at": now, "command": shlex.join(command), **event})
    else:
        record = {
            "command": shlex.join(command),
            "cwd": os.getcwd(),
            "started": now,
            "seed": seed,
            "device": device,
            "versions": versions,
            "git": git_state(Path.cwd()),
        }
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
