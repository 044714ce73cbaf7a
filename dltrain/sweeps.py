"""The summary of a sweep: one table of every job, best first, failed jobs included.

Written when a multirun ends (a Hydra callback) and on demand with ``dltrain summary SWEEP``:
prints the table, writes summary.csv, sweep.png and curves.png (every job's learning curves)
into the sweep folder, and names the replay command of the best job. Jobs that differ only in ``trainer.seed`` are also shown as mean ± std.

The list of jobs comes from the sweep's own record, multirun.yaml: for a grid (Hydra's basic
sweeper) it is the cartesian product the sweeper computes, so a job that never started is listed
too. For a search with dltrain's Optuna sweeper the list is the study's trials
(:func:`dltrain.hpo.study_jobs`), wherever they ran. Each job's status is completed,
early_stopped, pruned (a search's pruner stopped it), failed, interrupted, running (its folder's
lock is held) or not started. No torch here: summarizing reads files (and a search's study) only.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import yaml
from rich.console import Console
from rich.table import Table

from dltrain import runs
from dltrain.atomic import atomic_write_text
from dltrain.console import format_value, titled
from dltrain.errors import UserError

CSV_NAME = "summary.csv"
PLOT_NAME = "sweep.png"
CURVES_NAME = "curves.png"  # every job's learning curves (dltrain compare's picture)
SEED_KEY = "trainer.seed"
RECORD = "multirun.yaml"  # Hydra's record of the sweep: its config, overrides and sweeper
OVERRIDES = Path(".hydra") / "overrides.yaml"
HYDRA_RECORD = Path(".hydra") / "hydra.yaml"
NUMBERED = "${hydra.job.num}"  # train.yaml's hydra.sweep.subdir: job N lives in SWEEP/N

FINISHED = ("completed", "early_stopped")
PRUNED = "pruned"  # stopped by a search's pruner: a result, but not a candidate for best
INTERRUPTED = "interrupted"
RUNNING = "running"
NOT_STARTED = "not started"
FAILED = "failed"
# the table's order: results first, then what is partial, pending, and failures with reasons
STATUS_ORDER = (*FINISHED, PRUNED, INTERRUPTED, RUNNING, NOT_STARTED, FAILED)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _params(overrides: Sequence[str]) -> Dict[str, Any]:
    params = {}
    for item in overrides:
        key, _, value = str(item).lstrip("+~").partition("=")
        if not key.startswith("hydra"):
            params[key] = _parse_value(value)
    return params


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def lock_holder(job_dir: Path) -> Optional[str]:
    """The PID written in ``job_dir``'s lock while a process trains there, else None.

    flock has no query: a shared lock is tried and released at once (a dltrain process starting
    in that very instant would see the folder as in use).
    """
    import fcntl

    try:
        f = open(Path(job_dir) / runs.LOCK)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "unknown"
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def read_job(job_dir: Path) -> Dict[str, Any]:
    """One job's overrides (as parsed values), status and summary.json.

    Without a summary.json a job that left a last.pt was stopped without saying so (killed), and
    one that did not is treated as not started: it has nothing to keep.
    """
    job_dir = Path(job_dir)
    overrides_path = job_dir / OVERRIDES
    overrides = [str(o) for o in (_load_yaml(overrides_path) or [])] if overrides_path.exists() else []
    summary_path = job_dir / runs.SUMMARY
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    elif (job_dir / runs.CHECKPOINTS / runs.LAST).is_file():
        summary = {"status": INTERRUPTED,
                   "reason": "no summary.json: the process was killed after a checkpoint"}
    else:
        summary = {"status": NOT_STARTED}
    holder = lock_holder(job_dir)
    if holder is not None:
        summary = {**summary, "status": RUNNING, "pid": holder}
    return {"job": job_dir.name, "dir": str(job_dir), "overrides": overrides,
            "params": _params(overrides), **summary}


def job_dirs(sweep_dir: Path) -> List[Path]:
    dirs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


# ---------------------------------------------------------------------------------------------
# the sweep's record: what a folder must hold to be a sweep, and the jobs it planned
def read_record(sweep_dir: Path) -> Optional[Dict[str, Any]]:
    """multirun.yaml as plain data (interpolations stay strings), or None where there is none
    (Hydra's Optuna sweeper does not write one)."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        return None
    record = _load_yaml(path)
    if not isinstance(record, dict) or not isinstance(record.get("hydra"), dict):
        raise UserError(f"{path} is not Hydra's record of a sweep (no hydra: section in it)")
    return record


def _multirun_job(job_dir: Path) -> Optional[Dict[str, Any]]:
    """The Hydra section of a folder's .hydra/hydra.yaml when a multirun made it, else None."""
    path = job_dir / HYDRA_RECORD
    try:
        hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra") if path.is_file() else None
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return hydra if isinstance(hydra, dict) and hydra.get("mode") == "MULTIRUN" else None


def is_sweep(path: Path) -> bool:
    """A sweep's folder holds multirun.yaml, or (an Optuna search) jobs that a multirun made."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / RECORD).is_file():
        return True
    return any(_multirun_job(d) for d in job_dirs(path)[:3])


def check_sweep(path: Path, command: str = "summary") -> Path:
    """``path`` when it is a sweep's folder; otherwise one line saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such folder: {path}")
    if is_sweep(path):
        return path
    where = "a sweep's folder is outputs/multirun/DATE/TIME-ID"
    if (path / runs.SAVED_CONFIG).is_file():
        raise UserError(f"{path} is a run folder, not a sweep: dltrain {command} takes a sweep "
                        f"({where})")
    inner = [p for p in sorted(path.iterdir()) if is_sweep(p)] if path.is_dir() else []
    if inner:
        raise UserError(f"{path} is not a sweep; name one of the sweeps in it: "
                        + ", ".join(str(p) for p in inner[:5]) + (" ..." if len(inner) > 5 else ""))
    raise UserError(f"{path} is not a sweep folder: it holds no {RECORD} and no sweep jobs "
                    f"({where})")


def sweeper_name(sweep_dir: Path, record: Optional[Dict[str, Any]]) -> str:
    """The hydra/sweeper option the sweep ran with: basic (a grid), optuna, ..."""
    hydra = record["hydra"] if record else next(
        (h for h in map(_multirun_job, job_dirs(Path(sweep_dir))) if h), {})
    choice = ((hydra.get("runtime") or {}).get("choices") or {}).get("hydra/sweeper")
    if choice:
        return str(choice)
    target = str((hydra.get("sweeper") or {}).get("_target_", ""))
    return "basic" if target.endswith(".BasicSweeper") else target or "unknown"


def planned_jobs(record: Dict[str, Any]) -> List[List[str]]:
    """Every job's overrides, in job-number order, as Hydra's basic sweeper computes them from
    the sweep's own record (its params, then the command line's overrides)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    hydra = record["hydra"]
    params = (hydra.get("sweeper") or {}).get("params") or {}
    try:
        arguments = [f"{k}={v}" for k, v in params.items()] + list(hydra["overrides"]["task"])
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"the sweep's {RECORD} holds no hydra.overrides.task: its jobs are "
                        "unknown") from None
    try:
        with _config_loader(any("glob(" in a for a in arguments)) as loader:
            overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
            batches = BasicSweeper.split_arguments(overrides, None)
    except HydraException as e:
        raise UserError(f"cannot list the jobs of the sweep from its {RECORD}: {e}") from None
    return [list(job) for batch in batches for job in batch]


@contextlib.contextmanager
def _config_loader(needed: bool) -> Iterator[Any]:
    """Hydra's loader of dltrain's configs, when ``needed`` (a glob() sweep lists a group's
    options with it), else None."""
    if not needed:
        yield None
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dltrain import launch

    if GlobalHydra.instance().is_initialized():  # at the end of a sweep, inside hydra.main
        yield GlobalHydra.instance().config_loader()
        return
    launch._setup_hydra()  # dltrain's structured configs and resolvers
    with initialize_config_dir(str(launch.config_dir()), version_base="1.3", job_name="dltrain"):
        yield GlobalHydra.instance().config_loader()


def numbered(record: Optional[Dict[str, Any]]) -> bool:
    """Whether the sweep puts job N in SWEEP/N (train.yaml's hydra.sweep.subdir)."""
    if record is None:
        return True
    return str((record["hydra"].get("sweep") or {}).get("subdir", NUMBERED)) == NUMBERED


def sweep_jobs(sweep_dir: Path, strict: bool = False) -> List[Dict[str, Any]]:
    """Every job of the sweep, in job-number order: the jobs its record plans (for a grid),
    each matched to its folder by its overrides, then any folder the plan does not name.

    A record whose jobs cannot be listed leaves the folders alone to go by, unless ``strict``
    (a resume needs the whole list).
    """
    sweep_dir = check_sweep(sweep_dir)
    record = read_record(sweep_dir)
    folders = {d.name: read_job(d) for d in job_dirs(sweep_dir)}
    if sweeper_name(sweep_dir, record) == "dltrain_optuna":  # a search: its study's trials
        from dltrain.hpo import study_jobs

        trials = study_jobs(sweep_dir, folders)
        return trials if trials is not None else list(folders.values())
    if record is None or sweeper_name(sweep_dir, record) != "basic":
        return list(folders.values())
    try:
        planned = planned_jobs(record)
    except UserError:
        if strict:
            raise
        return list(folders.values())
    jobs = []
    for num, overrides in enumerate(planned):
        name = str(num) if numbered(record) else None
        if name not in folders or folders[name]["overrides"] != overrides:
            name = next((n for n, job in folders.items() if job["overrides"] == overrides), None)
        if name is not None:
            job = folders.pop(name)
        else:
            folder = sweep_dir / str(num) if numbered(record) else None
            job = {"job": str(num), "dir": str(folder) if folder else "", "overrides": overrides,
                   "params": _params(overrides), "status": NOT_STARTED}
        jobs.append({**job, "num": num})
    return jobs + list(folders.values())


def _metric_keys(jobs: Sequence[Dict[str, Any]]) -> List[str]:
    keys: List[str] = []
    for job in jobs:
        for key in job:
            if (key.startswith(("best_", "test_")) and key not in keys and key != "best_epoch"):
                keys.append(key)
    return keys


def _sort(jobs: List[Dict[str, Any]], monitor_key: Optional[str], mode: str) -> List[Dict[str, Any]]:
    """Finished jobs best first, then pruned and interrupted ones (by their best so far), then
    running, not started and failed jobs in job order."""
    def key(job: Dict[str, Any]):
        status = job.get("status", FINISHED[0])  # mean ± std rows have none: finished jobs'
        rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
        rank = 0 if status in FINISHED else rank
        value = job.get(monitor_key) if monitor_key else None
        if (status in (*FINISHED, PRUNED, INTERRUPTED) and isinstance(value, (int, float))
                and not math.isnan(value)):
            return (rank, 0, value if mode == "min" else -value)
        return (rank, 1, job.get("num", 0))

    return sorted(jobs, key=key)


def _fmt(value: Any, key: str = "") -> str:
    return format_value(value, key)


def _config_value(job_dir: Path, key: str) -> Any:
    """The value ``key`` (dotted) had in a job's saved config: what a job that did not set a
    swept parameter ran with (its default), for sweep.png."""
    try:
        node: Any = _load_yaml(job_dir / ".hydra" / "config.yaml")
    except UserError:  # no saved config: the plot labels the value "default"
        return None
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _aggregate(jobs: List[Dict[str, Any]], params: List[str], metrics: List[str]) -> List[Dict[str, Any]]:
    """Mean ± std over seeds of each combination of the other swept parameters (finished jobs
    only: an interrupted job's best so far is not a result)."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for job in jobs:
        if job.get("status") not in FINISHED:
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


def status_counts(jobs: Sequence[Dict[str, Any]], noun: str = "job") -> str:
    """'3 jobs' when every job completed, else '3 jobs: 1 completed, 1 interrupted, ...'
    (``noun``: what a job is called there, e.g. 'run')."""
    counts: Dict[str, int] = {}
    for job in jobs:
        counts[job.get("status", "?")] = counts.get(job.get("status", "?"), 0) + 1
    text = f"{len(jobs)} {noun}{'s' if len(jobs) != 1 else ''}"
    if set(counts) == {"completed"}:
        return text
    order = sorted(counts, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 99)
    return text + ": " + ", ".join(f"{counts[s]} {s}" for s in order)


def status_cell(job: Dict[str, Any]) -> str:
    """A job's status as a table shows it (rich markup): a failure with its reason, a running
    job with its process."""
    status = job.get("status")
    if status == FAILED:
        return f"[red]failed[/]: {job.get('reason', '')}"
    if status == RUNNING:
        return f"[yellow]running[/] (process {job.get('pid')})"
    if status in (PRUNED, INTERRUPTED, NOT_STARTED):
        return f"[yellow]{status}[/]"
    return _fmt(status)


def summarize_sweep(sweep_dir: Path, console: Console, *, write: bool = True) -> List[Dict[str, Any]]:
    """Print the table of every job of the sweep at ``sweep_dir`` and (``write``) save
    summary.csv and sweep.png into it; the rows, best first. A folder that is not a sweep is
    refused before anything is written."""
    sweep_dir = check_sweep(Path(sweep_dir))
    jobs = in_order = sweep_jobs(sweep_dir)
    if not jobs:
        raise UserError(f"{sweep_dir} holds no job folders (each job has a .hydra/ folder)")
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

    counts = status_counts(jobs)
    separator = ";" if ":" in counts else ","
    order = f"{separator} sorted by {monitor_key}, {mode}" if monitor_key else ""
    title = f"sweep {sweep_dir} ({counts}{order})"
    if shared:
        title += f"\nshared: {' '.join(shared)}"
    table = Table()
    for col in ["job", *params, "status", *metrics, "epochs"]:
        table.add_column(col, justify="right" if col in metrics or col == "epochs" else "left")
    rows = []
    for job in jobs:
        row = {"job": job["job"], **{p: job["params"].get(p) for p in params},
               "status": job.get("status"), **{m: job.get(m) for m in metrics},
               "epochs": job.get("epochs_completed"), "reason": job.get("reason", ""),
               "dir": job["dir"]}
        rows.append(row)
        cells = [_fmt(row[c], c) for c in ["job", *params, "status", *metrics, "epochs"]]
        cells[len(params) + 1] = status_cell(job)
        table.add_row(*cells)
    # the title a line of its own: rich would wrap it at the table's width
    console.print(titled(title, table))

    seed_params = [p for p in params if p != SEED_KEY]
    if SEED_KEY in params:
        agg = _aggregate(jobs, seed_params, metrics)
        agg_table = Table()
        for col in [*seed_params, "seeds", *metrics]:
            agg_table.add_column(col)
        for row in _sort(agg, monitor_key, mode):
            agg_table.add_row(*[_fmt(row.get(p), p) for p in seed_params], str(row["seeds"]),
                              *[f"{row[m]:.4g} ± {row[m + '_std']:.2g}" if m in row else ""
                                for m in metrics])
        console.print(titled("mean ± std over trainer.seed", agg_table))

    best = next((j for j in jobs if j.get("status") in FINISHED and monitor_key in j), None)
    if best is not None:
        console.print(f"best job: {best['job']} ({monitor_key} = {_fmt(best[monitor_key], monitor_key)})",
                      markup=False)
        console.print(f"replay it: dltrain replay {best['dir']}", markup=False)
    unfinished = [j for j in jobs if j.get("status") in (INTERRUPTED, NOT_STARTED)]
    if unfinished and not any(j.get("status") == RUNNING for j in jobs):
        console.print(f"{len(unfinished)} job{'s' if len(unfinished) != 1 else ''} unfinished: "
                      f"finish the sweep with dltrain resume {sweep_dir}", markup=False)
    if write:
        _write_csv(sweep_dir / CSV_NAME, rows)
        if monitor_key:
            from dltrain.plots import plot_sweep

            finished = [r for r in rows if r["status"] in FINISHED]
            plot_sweep([{**r, **{p: _config_value(Path(r["dir"]), p) for p in params
                                 if r.get(p) is None}} for r in finished],
                       params, monitor_key, sweep_dir / PLOT_NAME)
        _draw_curves(sweep_dir, in_order, console)
    return rows


def _draw_curves(sweep_dir: Path, jobs: List[Dict[str, Any]], console: Console) -> None:
    """curves.png: every job's learning curves in one picture (dltrain compare's). A picture
    never fails a sweep: whatever goes wrong is one warning line."""
    try:
        from dltrain.compare import draw_sweep_curves

        draw_sweep_curves(sweep_dir, jobs)
    except Exception as e:  # noqa: BLE001 - the sweep's results are already written
        why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        console.print(f"warning: no {sweep_dir / CURVES_NAME}: {why}", markup=False)


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
        from dltrain.console import (
            console,  # here: summarize_sweep takes a console of its own
        )

        try:
            summarize_sweep(Path(config.hydra.sweep.dir), console)
        except UserError as e:
            console.print(f"no sweep summary: {e}", markup=False)
