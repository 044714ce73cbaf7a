"""The run folder: metrics.csv, checkpoints/ and summary.json beside Hydra's .hydra/, the
record of how the run came to be (run.yaml), and the lock that keeps one process per folder."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping

from dltrain.atomic import atomic_write_text
from dltrain.errors import UserError

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
SAVED_CONFIG = Path(".hydra") / "config.yaml"
LOCK = ".lock"


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
                 command: List[str], event: Dict[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
    """run.yaml: how this run came to be (seed, command, versions, device, git state, and
    ``extra``: the paths as typed, the data's fingerprint).

    A resumed run keeps its original record and appends one entry per resume to ``resumes``
    (``event``: the epoch it resumed from, the changes it accepted).
    """
    import datetime
    import os
    import shlex

    path = Path(root) / RECORD
    now = datetime.datetime.now().isoformat(timespec="seconds")
    if event is not None and path.exists():
        record = read_record(root)
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
            **(extra or {}),
        }
    import yaml

    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))


def read_record(root: Path) -> Dict[str, Any]:
    """run.yaml as a mapping; empty for a run folder written before it existed."""
    import yaml

    path = Path(root) / RECORD
    if not path.is_file():
        return {}
    try:
        record = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UserError(yaml_problem(path, e)) from None
    return record if isinstance(record, dict) else {}


def yaml_problem(path: Path, error: Exception) -> str:
    """One line for a saved config that yaml refused, naming the file and line: a tag such as
    ``!!python/object/apply:os.system`` (a crafted or tampered file) is not plain YAML."""
    import yaml

    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"{path}: not valid YAML ({str(error).splitlines()[0]})"
    where = f"{path}, line {mark.line + 1}"
    if isinstance(error, yaml.constructor.ConstructorError):
        # the mark points at the tag the safe loader has no constructor for
        try:
            line = path.read_text(errors="replace").splitlines()[mark.line]
            tag = (line[mark.column:].split() or ["a tag"])[0]
        except (OSError, IndexError):
            tag = "a tag"
        return (f"{where}: not plain YAML: {tag} asks for a Python object; dltrain reads a "
                "saved config as plain data and runs nothing from it (restore the file, or "
                "start a new run)")
    return f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})"


def save_config(root: Path, config_dict: Mapping[str, Any]) -> None:
    """Write RUN/.hydra/config.yaml: the config replay reads (values only, no code)."""
    from omegaconf import OmegaConf

    atomic_write_text(Path(root) / SAVED_CONFIG, OmegaConf.to_yaml(OmegaConf.create(dict(config_dict))))


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder ``root`` while training in it.

    An OS lock (flock), so the kernel releases it when the holder dies, however it dies: a lock
    left by a killed process never blocks. A second process is refused with the holder's PID.
    """
    import fcntl
    import os

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise UserError(f"{root} is in use: dltrain process {holder} is training in it; "
                            "wait for it to finish or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # the file stays (removing it would race a process opening it)
