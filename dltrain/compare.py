"""``dltrain compare RUN_OR_SWEEP...``: the learning curves of several runs in one picture
(compare.png), and their results in one table.

A sweep's folder stands for all its jobs, and after a sweep the same picture is drawn into it as
curves.png (:func:`draw_sweep_curves`, called from :func:`dltrain.sweeps.summarize_sweep`).
Each run is named by what differs between the runs' saved configs
(``activation=sigmoid model.hidden_sizes=[64,64]``), or by its folder when nothing does.

A run folder is read as the rest of dltrain reads it: its status and summary.json as the sweep
summary does (:func:`dltrain.sweeps.read_job`), its config as replay does
(:func:`dltrain.rerun.saved_config`), its metrics.csv with :func:`dltrain.runs.read_metrics`.
A run with no finished epoch yet (running, killed early, failed at once, not started) is listed
in the table and left out of the picture, with a note. No torch here; matplotlib only to draw.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dltrain import rerun, runs, schema, sweeps
from dltrain.console import format_value, titled
from dltrain.errors import UserError

PICTURE = "compare.png"
# the picture's panels, in order: each drawn when every run in it has the column
LOSSES = ("train_loss", "val_loss")
TASK_METRICS = ("val_acc", "val_mae", "val_r2")
PANELS = (*LOSSES, *TASK_METRICS, "lr")
# keys that say how a run was carried out, not what it computed (resume lets them change for
# that reason): they differ between runs of one experiment and would only clutter a label.
# The length of training and early stopping's patience do shape the curves.
UNLABELLED = rerun.FREE_ON_RESUME - {"trainer.epochs", "trainer.early_stopping.patience"}
UNLABELLED_PREFIXES = rerun.FREE_PREFIXES


@dataclass
class Run:
    """One run (or a sweep's job) as compare reads it."""

    name: str  # its folder's name: its label when nothing differs
    job: Dict[str, Any]  # sweeps.read_job's record: dir, status, params, summary.json's values
    config: Dict[str, Any]  # the saved config, flattened (optim.lr); empty when never started
    history: List[Dict[str, float]] = field(default_factory=list)  # metrics.csv's rows
    problem: str = ""  # why it has no curves
    label: str = ""

    @property
    def task(self) -> str:
        if self.job.get("task"):
            return str(self.job["task"])
        columns = self.history[0] if self.history else {}
        return "classification" if "val_acc" in columns else "regression" if columns else "unknown"


# ---------------------------------------------------------------------------------------------
# the folders named on the command line
def collect(paths: Sequence[str]) -> List[Dict[str, Any]]:
    """The jobs of every run and sweep folder in ``paths``, in order (a sweep's in job order),
    each once; one line for a path that is neither."""
    if not paths:
        raise UserError("dltrain compare: name the runs or sweeps to compare, e.g. "
                        "dltrain compare outputs/multirun/DATE/TIME-ID")
    jobs: List[Dict[str, Any]] = []
    seen = set()
    for path in map(Path, paths):
        for job in _jobs_of(path):
            key = os.path.realpath(job["dir"]) if job.get("dir") else (str(path), job["job"])
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return jobs


def _is_run(path: Path) -> bool:
    return (path / runs.SAVED_CONFIG).is_file()


def _jobs_of(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        raise UserError(f"no such folder: {path}")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run or sweep folder")
    if _is_run(path):
        return [sweeps.read_job(path)]
    if sweeps.is_sweep(path):
        return sweeps.sweep_jobs(path)
    inner = [p for p in sorted(path.iterdir()) if p.is_dir() and (_is_run(p) or sweeps.is_sweep(p))]
    if inner:
        raise UserError(f"{path} is not a run or sweep folder, but holds {len(inner)}: dltrain "
                        "compare " + " ".join(str(p) for p in inner[:5])
                        + (" ..." if len(inner) > 5 else ""))
    raise UserError(f"{path} is not a run or sweep folder: it holds no {runs.SAVED_CONFIG} and no "
                    f"{sweeps.RECORD} (a run is outputs/DATE/TIME-ID, a sweep "
                    "outputs/multirun/DATE/TIME-ID)")


def read_run(job: Dict[str, Any]) -> Run:
    """``job`` (sweeps.read_job's record) with its saved config and metrics.csv."""
    folder = Path(job["dir"]) if job.get("dir") else None
    name = folder.name if folder else str(job["job"])
    config = schema.flatten(rerun.saved_config(folder)) if folder and _is_run(folder) else {}
    run = Run(name=name, job=job, config=config)
    metrics = folder / runs.METRICS if folder else None
    if metrics is None or not metrics.is_file():
        run.problem = "no metrics yet"
        return run
    try:
        run.history = runs.read_metrics(metrics)
    except (OSError, ValueError, TypeError, csv.Error) as e:  # not as dltrain writes it
        run.problem = f"{runs.METRICS} unreadable ({e})"
        return run
    if not run.history:
        run.problem = "no epoch finished yet"
    return run


# ---------------------------------------------------------------------------------------------
# labels: what differs between the runs
def _key(key: str) -> str:
    """``optim.name`` reads as the group it chooses, ``optim``; other keys stay as they are."""
    group, _, rest = key.partition(".")
    return group if rest == "name" and group in schema.GROUPS else key


def _text(value: Any) -> str:
    """A value as an override would write it: ``[64,64]``, ``null``, ``true``, ``0.001``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _labelled(key: str) -> bool:
    return key not in UNLABELLED and not key.startswith(UNLABELLED_PREFIXES)


def varying_keys(configs: Sequence[Mapping[str, Any]]) -> List[str]:
    """The (flattened) keys whose values differ between the ``configs`` that have them, in the
    order labels name them. A key that some configs lack is compared among the others: it
    belongs to a group option they did not choose (``optim.momentum`` is sgd's; ``optim=adam``
    says the rest), or to a dltrain newer than the one that wrote them."""
    varying = []
    for key in dict.fromkeys(k for c in configs for k in c):
        if _labelled(key) and len({_text(c[key]) for c in configs if key in c}) > 1:
            varying.append(key)
    return sorted(varying, key=_key)


def labels(configs: Sequence[Mapping[str, Any]], names: Sequence[str],
           varying: Optional[Sequence[str]] = None) -> List[str]:
    """One label per run: ``key=value`` for each key that differs between the ``configs``
    (flattened; ``varying``, where given), or the run's name (its folder's) where none does.
    Runs left with the same label add their names."""
    if varying is None:
        varying = varying_keys([c for c in configs if c])
    out = []
    for config, name in zip(configs, names):
        parts = [f"{_key(k)}={_text(config[k])}" for k in varying if k in config]
        out.append(" ".join(parts) or name)
    counts = Counter(out)
    return [f"{label} ({name})" if counts[label] > 1 and label != name else label
            for label, name in zip(out, names)]


def _names(runs_: Sequence[Run]) -> List[str]:
    """Folder names, with the parent's where the name alone says little: a sweep's job (``0``),
    or two folders of one name."""
    counts = Counter(r.name for r in runs_)
    return [f"{Path(r.job['dir']).parent.name}/{r.name}"
            if r.job.get("dir") and (r.name.isdigit() or counts[r.name] > 1) else r.name
            for r in runs_]


def _params_config(job: Mapping[str, Any]) -> Dict[str, Any]:
    """A job that never started has no saved config: its overrides stand in for one."""
    return {f"{k}.name" if k in schema.GROUPS else k: v for k, v in job.get("params", {}).items()}


def read_runs(jobs: Sequence[Dict[str, Any]]) -> List[Run]:
    """Every job read (:func:`read_run`) and labelled (:func:`labels`)."""
    read = [read_run(job) for job in jobs]
    names = _names(read)
    varying = varying_keys([r.config for r in read if r.config])
    configs = [r.config or {k: v for k, v in _params_config(r.job).items() if k in varying}
               for r in read]
    for run, label in zip(read, labels(configs, names, varying)):
        run.label = label
    return read


# ---------------------------------------------------------------------------------------------
# the picture
def panels(drawn: Sequence[Run]) -> Tuple[List[str], List[str]]:
    """The picture's panels (:data:`PANELS` that every drawn run has), and a note for each task
    metric that only some of them have."""
    keys = [k for k in PANELS if all(k in r.history[0] for r in drawn)]
    left_out = [k for k in TASK_METRICS if k not in keys and any(k in r.history[0] for r in drawn)]
    notes = []
    tasks = sorted({r.task for r in drawn})
    if left_out and len(tasks) > 1:
        notes.append(f"runs of different tasks ({', '.join(tasks)}): no panel for "
                     f"{', '.join(left_out)}, which only some of them have")
    elif left_out:
        notes.append(f"no panel for {', '.join(left_out)}: only some runs have it")
    return keys, notes


def draw(runs_: Sequence[Run], path: Path, title: str = "") -> Tuple[Dict[int, str], List[str]]:
    """Write the picture of the runs that have curves to ``path``; their colours (by index in
    ``runs_``) and the notes to print. Nothing is written when no run has curves."""
    drawn = [i for i, r in enumerate(runs_) if r.history]
    if not drawn:
        return {}, []
    from dltrain import plots

    keys, notes = panels([runs_[i] for i in drawn])
    if not keys:  # not metrics.csv as dltrain writes it
        return {}, ["no picture: the runs share no column of metrics.csv to draw"]
    colors = plots.run_colors(len(drawn))
    plots.plot_compare([(runs_[i].label, runs_[i].history) for i in drawn], keys, path,
                       colors=colors, title=title)
    skipped = [r for r in runs_ if not r.history]
    if skipped:
        notes.append("not in the picture: " + "; ".join(
            f"{r.label}: {r.job.get('status')}, {r.problem}" for r in skipped))
    return dict(zip(drawn, colors)), notes


def draw_sweep_curves(sweep_dir: Path, jobs: Sequence[Dict[str, Any]]) -> Optional[Path]:
    """curves.png in the sweep's folder: every job's curves, labelled by what the sweep varied;
    its path, or None when no job has finished an epoch."""
    path = Path(sweep_dir) / sweeps.CURVES_NAME
    colors, _ = draw(read_runs(jobs), path, title=f"sweep {sweep_dir}")
    return path if colors else None


# ---------------------------------------------------------------------------------------------
# the table
def results_table(runs_: Sequence[Run], colors: Mapping[int, str]) -> Table:
    """One row per run: its label (in its colour in the picture), status, epochs, best monitored
    value and epoch, test metrics, training time and folder."""
    monitors = list(dict.fromkeys(f"best_{r.job['monitor']}" for r in runs_ if r.job.get("monitor")))
    tests = list(dict.fromkeys(k for r in runs_ for k in r.job if k.startswith("test_")))
    numbers = ["epochs", *[c for c in (*monitors, "best_epoch", *tests, "train_time_s")
                           if any(r.job.get(c) is not None for r in runs_)]]
    table = Table()
    table.add_column("run")
    table.add_column("status")
    for column in numbers:
        table.add_column(column, justify="right")
    table.add_column("folder")
    for i, run in enumerate(runs_):
        values = {**run.job, "epochs": run.job.get("epochs_completed", len(run.history) or None)}
        table.add_row(Text(run.label, style=colors.get(i, "")), sweeps.status_cell(run.job),
                      *[Text(format_value(values.get(c), c)) for c in numbers],
                      Text(str(run.job.get("dir", ""))))
    return table


def compare(paths: Sequence[str], out_dir: Path, console: Console) -> Optional[Path]:
    """``dltrain compare``: the table of the runs and sweeps in ``paths``, and compare.png in
    ``out_dir`` (created if needed); its path, or None when no run has curves to draw."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; name a folder (it is created if needed)")
    runs_ = read_runs(collect(paths))
    drawn = [r for r in runs_ if r.history]
    path = out_dir / PICTURE
    colors: Dict[int, str] = {}
    notes = ["no picture: none of the runs has finished an epoch yet"]
    if drawn:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create --out {out_dir}: {e.strerror or e}") from None
        try:
            colors, notes = draw(runs_, path)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    counts = sweeps.status_counts([r.job for r in runs_], noun="run")
    console.print(titled(f"compare ({counts})", results_table(runs_, colors)))
    for note in notes:
        console.print(note, markup=False)
    if colors:
        console.print(f"wrote {path}", markup=False)
        return path
    return None
