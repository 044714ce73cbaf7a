"""The summary of a sweep: one table of every job, best first, failed jobs included.

Written when a multirun ends (a Hydra callback) and on demand with ``dltrain summary SWEEP``:
prints the table, writes summary.csv and sweep.png into the sweep folder, and names the replay
command of the best job. Jobs that differ only in ``trainer.seed`` are also shown as mean ± std.
No torch here: summarizing reads files only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from rich.console import Console
from rich.table import Table

from dltrain import runs
from dltrain.atomic import atomic_write_text
from dltrain.errors import UserError

CSV_NAME = "summary.csv"
PLOT_NAME = "sweep.png"
SEED_KEY = "trainer.seed"


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_job(job_dir: Path) -> Dict[str, Any]:
    """One job's overrides (as parsed values) and summary.json (or a failed status)."""
    overrides_path = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_path.read_text()) or [] if overrides_path.exists() else []
    params = {}
    for item in overrides:
        key, _, value = str(item).lstrip("+~").partition("=")
        if not key.startswith("hydra"):
            params[key] = _parse_value(value)
    summary_path = job_dir / runs.SUMMARY
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    else:
        summary = {"status": "failed", "reason": "no summary.json: the job did not finish"}
    return {"job": job_dir.name, "dir": str(job_dir), "params": params, **summary}


def job_dirs(sweep_dir: Path) -> List[Path]:
    dirs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _metric_keys(jobs: Sequence[Dict[str, Any]]) -> List[str]:
    keys: List[str] = []
    for job in jobs:
        for key in job:
            if (key.startswith(("best_", "test_")) and key not in keys and key != "best_epoch"):
                keys.append(key)
    return keys


def _sort(jobs: List[Dict[str, Any]], monitor_key: Optional[str], mode: str) -> List[Dict[str, Any]]:
    def key(job: Dict[str, Any]):
        value = job.get(monitor_key) if monitor_key else None
        if job.get("status") == "failed" or not isinstance(value, (int, float)) or math.isnan(value):
            return (1, 0.0)
        return (0, value if mode == "min" else -value)

    return sorted(jobs, key=key)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _aggregate(jobs: List[Dict[str, Any]], params: List[str], metrics: List[str]) -> List[Dict[str, Any]]:
    """Mean ± std over seeds of each combination of the other swept parameters."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for job in jobs:
        if job.get("status") == "failed":
            continue
        groups.setdefault(tuple(repr(job["params"].get(p)) for p in params), []).append(job)
    rows = []
    for members in groups.values():
        row: Dict[str, Any] = {p: members[0]["params"].get(p) for p in params}
        row["seeds"] = len(members)
        for m in metrics:
            values = [j[m] for j in members if isinstance(j.get(m), (int, float))]
            if values:
                row[m] = statistics.mean(values)
                row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def summarize_sweep(sweep_dir: Path, console: Console, *, write: bool = True) -> List[Dict[str, Any]]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"no sweep folder at {sweep_dir}")
    dirs = job_dirs(sweep_dir)
    if not dirs:
        raise UserError(f"{sweep_dir} holds no job folders (each job has a .hydra/ folder)")
    jobs = [read_job(d) for d in dirs]
    done = [j for j in jobs if j.get("monitor")]
    monitor = done[0]["monitor"] if done else None
    mode = done[0].get("mode", "min") if done else "min"
    monitor_key = f"best_{monitor}" if monitor else None
    jobs = _sort(jobs, monitor_key, mode)
    every = sorted({p for j in jobs for p in j["params"]})
    # the columns are what the sweep varied; overrides shared by every job go in the title
    params = [p for p in every if len({repr(j["params"].get(p)) for j in jobs}) > 1] or every
    shared = [f"{p}={jobs[0]['params'][p]}" for p in every if p not in params]
    metrics = _metric_keys(jobs)

    title = f"sweep {sweep_dir} ({len(jobs)} jobs, sorted by {monitor_key or '?'}, {mode})"
    if shared:
        title += f"\nshared: {' '.join(shared)}"
    table = Table(title=title, title_justify="left")
    for col in ["job", *params, "status", *metrics, "epochs"]:
        table.add_column(col, justify="right" if col in metrics or col == "epochs" else "left")
    rows = []
    for job in jobs:
        failed = job.get("status") == "failed"
        row = {"job": job["job"], **{p: job["params"].get(p) for p in params},
               "status": job.get("status"), **{m: job.get(m) for m in metrics},
               "epochs": job.get("epochs_completed"), "reason": job.get("reason", ""),
               "dir": job["dir"]}
        rows.append(row)
        cells = [_fmt(row[c]) for c in ["job", *params, "status", *metrics, "epochs"]]
        if failed:
            cells[len(params) + 1] = f"[red]failed[/]: {job.get('reason', '')}"
        table.add_row(*cells)
    console.print(table)

    seed_params = [p for p in params if p != SEED_KEY]
    if SEED_KEY in params:
        agg = _aggregate(jobs, seed_params, metrics)
        agg_table = Table(title="mean ± std over trainer.seed", title_justify="left")
        for col in [*seed_params, "seeds", *metrics]:
            agg_table.add_column(col)
        for row in _sort(agg, monitor_key, mode):
            agg_table.add_row(*[_fmt(row.get(p)) for p in seed_params], str(row["seeds"]),
                              *[f"{row[m]:.4g} ± {row[m + '_std']:.2g}" if m in row else ""
                                for m in metrics])
        console.print(agg_table)

    best = next((j for j in jobs if j.get("status") != "failed" and monitor_key in j), None)
    if best is not None:
        console.print(f"best job: {best['job']} ({monitor_key} = {_fmt(best[monitor_key])})",
                      markup=False)
        console.print(f"replay it: dltrain replay {best['dir']}", markup=False)
    if write:
        _write_csv(sweep_dir / CSV_NAME, rows)
        if monitor_key:
            from dltrain.plots import plot_sweep

            plot_sweep(rows, params, monitor_key, sweep_dir / PLOT_NAME)
    return rows


def _write_csv(path: Path, rows: List[Dict[str, Any]]) -> None:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


try:  # Hydra calls this when a multirun ends (configured in configs/train.yaml)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object


class SweepSummaryCallback(_HydraCallback):
    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from dltrain.console import console  # here: summarize_sweep takes a console of its own

        try:
            summarize_sweep(Path(config.hydra.sweep.dir), console)
        except UserError as e:
            console.print(f"no sweep summary: {e}", markup=False)
