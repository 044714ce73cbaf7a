"""``dltrain resume SWEEP``: finish a grid sweep that was interrupted, or continue a search.

The sweep's own record (multirun.yaml) lists its jobs (:func:`dltrain.sweeps.sweep_jobs`):

- finished and failed jobs are kept as they are;
- interrupted jobs continue in their folders from checkpoints/last.pt, as ``dltrain resume JOB``
  would continue each;
- jobs that never started run in their own numbered folders, through Hydra's ``run_job`` with
  the config Hydra's launcher would have given them (``load_sweep_config``), so their folders
  hold the same .hydra/ record as the sweep's other jobs;

then the summary covers them all. Every interrupted job's resume is checked before anything
runs.

A search with dltrain's Optuna sweeper (``dltrain -m hpo=NAME``) is continued by running the
search again, as it was started, in the same folder and on the same study: its trials that were
stopped before they finished continue from their last.pt, then new trials are asked for until
the study holds ``hydra.sweeper.n_trials`` (which the resume may raise). A search by Hydra's own
Optuna sweeper kept no study, and is refused.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from rich.console import Console

from dltrain import hpo, launch, runs, sweeps
from dltrain.console import console as default_console
from dltrain.console import err_console, report
from dltrain.errors import UserError


def resume_sweep(sweep_dir: Path, overrides: Sequence[str] = (), *, allow_changes: bool = False,
                 allow_data_change: bool = False, console: Console = default_console) -> int:
    """Run what an interrupted grid sweep left undone, then print its summary; the exit code
    (1 when a job could not be resumed, its folder left as it was)."""
    sweep_dir = sweeps.check_sweep(Path(sweep_dir), "resume")
    quoted = shlex.quote(str(sweep_dir))
    record = sweeps.read_record(sweep_dir)
    sweeper = sweeps.sweeper_name(sweep_dir, record)
    if sweeper == hpo.SWEEPER:
        _check_one_process()
        return continue_search(sweep_dir, record, overrides, allow_changes, console)
    if "optuna" in sweeper:
        raise UserError(f"{sweep_dir} is a search by Hydra's own Optuna sweeper "
                        f"(hydra/sweeper={sweeper}), which kept no study to continue; dltrain's "
                        "searches (dltrain -m hpo=NAME) keep theirs and resume")
    if overrides or allow_changes:
        raise UserError(f"a sweep resumes with the config its jobs started with, without overrides; "
                        f"to change a job, resume it alone: dltrain resume {quoted}/N "
                        f"{' '.join(overrides)}".rstrip())
    _check_one_process()
    if record is None:
        raise UserError(f"{sweep_dir} has no {sweeps.RECORD}, the sweep's record of its jobs: "
                        "it cannot be resumed")
    if sweeper != "basic":
        raise UserError(f"{sweep_dir} ran hydra/sweeper={sweeper}: dltrain resume finishes grid "
                        "sweeps (hydra/sweeper=basic) only")

    jobs = sweeps.sweep_jobs(sweep_dir, strict=True)
    running = [j for j in jobs if j["status"] == sweeps.RUNNING]
    if running:
        raise UserError(f"{sweep_dir} is still running: job {running[0]['job']} is held by dltrain "
                        f"process {running[0]['pid']}; wait for it to finish or stop it first")
    todo = [j for j in jobs if "num" in j and j["status"] in (sweeps.INTERRUPTED, sweeps.NOT_STARTED)]
    if not todo:
        counts = sweeps.status_counts(jobs)
        raise UserError(f"{sweep_dir} has nothing left to run "
                        f"({counts if ':' in counts else counts + ', all completed'}); to train a "
                        f"job further, resume it alone: dltrain resume {quoted}/N trainer.epochs=M")
    # every resume is checked before any job runs: a refusal leaves the whole sweep untouched
    plans = {}
    for job in todo:
        if job["status"] == sweeps.INTERRUPTED and _has_last(job):
            plans[job["num"]] = _prepare(job, allow_data_change)
    varied = _varied(jobs)
    console.print(_plan_line(sweep_dir, jobs, todo, plans), markup=False)
    launcher = ((record["hydra"].get("runtime") or {}).get("choices") or {}).get("hydra/launcher")
    if launcher not in (None, "basic"):
        console.print(f"the sweep ran with hydra/launcher={launcher}; its unfinished jobs run "
                      "here, one after another", markup=False)

    failures = 0
    with _hydra_context(sweep_dir) as start:
        for job in todo:
            label = f"job {job['num']}" + (f" ({_describe(job, varied)})" if varied else "")
            try:
                if job["num"] in plans:
                    console.print(f"{label}: resuming from its checkpoints/last.pt", markup=False)
                    if not _resume(plans[job["num"]], label, console):
                        failures += 1
                else:
                    console.print(f"{label}: starting", markup=False)
                    start(job)
            except SystemExit as e:
                if e.code not in (0, None):  # a signal stopped it (130, 143): the rest waits
                    err_console.print(f"the sweep is not finished; continue it with:\n"
                                      f"  dltrain resume {quoted}", markup=False)
                raise
    sweeps.summarize_sweep(sweep_dir, console)
    return 1 if failures else 0


# ---------------------------------------------------------------------------------------------
# a search (dltrain's Optuna sweeper)
N_TRIALS = "hydra.sweeper.n_trials"
# what the resume sets itself: the search's folder and study, as they are now
PINNED = ("hydra.sweep.dir", "hydra.sweeper.storage", "hydra.sweeper.study_name", N_TRIALS)


def continue_search(sweep_dir: Path, record: Optional[Dict[str, Any]], overrides: Sequence[str],
                    allow_changes: bool, console: Console) -> int:
    """Run the search of ``sweep_dir`` again, as its command started it (multirun.yaml's
    overrides, from the folder it started in), in the same sweep folder and on the same study
    (study.yaml); ``hydra.sweeper.n_trials=N`` is the one override taken. Hydra prints the
    summary of every trial when it ends."""
    quoted = shlex.quote(str(sweep_dir))
    n_trials = [o.partition("=")[2] for o in overrides if o.startswith(f"{N_TRIALS}=")]
    if allow_changes or len(n_trials) != len(overrides):
        raise UserError(f"a search resumes with the config it started with; only its number of "
                        f"trials may change: dltrain resume {quoted} {N_TRIALS}=N")
    study_record = hpo.read_study_record(sweep_dir)
    try:
        hydra = record["hydra"]  # type: ignore[index]
        hydra_overrides = [str(o) for o in hydra["overrides"]["hydra"]]
        task_overrides = [str(o) for o in hydra["overrides"]["task"]]
        target = int(n_trials[-1]) if n_trials else int(hydra["sweeper"]["n_trials"])
    except (TypeError, KeyError, ValueError):
        raise UserError(f"{sweep_dir} has no readable {sweeps.RECORD} (or {N_TRIALS}="
                        f"{n_trials[-1] if n_trials else '?'} is not a number): the search cannot "
                        "be run again") from None
    if study_record is None:
        raise UserError(f"{sweep_dir} has no {hpo.STUDY_RECORD}, the record of its study: the "
                        "search cannot be continued")
    url, name = study_record["storage"], study_record["study_name"]
    trials = hpo.load_study(url, name).get_trials(deepcopy=False)
    held = sum(hpo.counts(t) for t in trials)
    behind = [t.number for t in trials if hpo.left_behind(t)]
    if held >= target and not behind:
        counts = sweeps.status_counts(sweeps.sweep_jobs(sweep_dir), noun="trial")
        raise UserError(f"{sweep_dir} has nothing left to run: its study {name!r} holds {held} of "
                        f"{target} trials ({counts}); to search further, raise their number: "
                        f"dltrain resume {quoted} {N_TRIALS}={held + 10}")
    left = f"{len(behind)} stopped before finishing (continued first: trial " \
        f"{', '.join(map(str, behind))}), " if behind else ""
    console.print(f"continuing the search {sweep_dir}: study {name!r} holds {held} of {target} "
                  f"trials; {left}{max(target - held, 0)} more to run", markup=False)
    argv = ["--multirun",
            *(o for o in hydra_overrides if o.lstrip("+~").partition("=")[0] not in PINNED),
            *task_overrides,
            f"hydra.sweep.dir={hpo.quote(Path(sweep_dir).resolve())}",
            f"hydra.sweeper.storage={hpo.quote(url)}", f"hydra.sweeper.study_name={hpo.quote(name)}",
            f"{N_TRIALS}={target}"]
    # relative paths of the command (data.path=...) mean what they meant where it started
    cwd = Path(str((hydra.get("runtime") or {}).get("cwd") or "."))
    with working_dir(cwd if cwd.is_dir() else Path.cwd()):
        _run_hydra(argv)
    return 0


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """The current folder is ``path`` inside the block (contextlib.chdir from Python 3.11)."""
    import os

    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _run_hydra(argv: List[str]) -> None:
    """Hydra's multirun with ``argv``, as ``dltrain -m`` runs it (launch.run_hydra, without its
    check that the sweep folder is new)."""
    import logging
    import os
    import sys

    import hydra

    launch._setup_hydra()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sys.argv = [sys.argv[0], *argv]
    os.environ[launch.INVOCATION_ENV] = shlex.join(launch.invocation)
    hydra.main(version_base="1.3", config_path=str(launch.config_dir()),
               config_name="train")(launch.train_task)()


# ---------------------------------------------------------------------------------------------
def _check_one_process() -> None:
    from dltrain import distributed

    started = distributed.detect()
    if started is not None and started.world_size > 1:
        raise UserError("dltrain resume SWEEP runs its jobs in one process: run it without "
                        f"torchrun or srun (this launch started {started.world_size}), or resume "
                        "each job with torchrun: dltrain resume SWEEP/N")


def _has_last(job: Dict[str, Any]) -> bool:
    return (Path(job["dir"]) / runs.CHECKPOINTS / runs.LAST).is_file()


def _prepare(job: Dict[str, Any], allow_data_change: bool):
    from dltrain.rerun import prepare_resume

    try:
        return prepare_resume(job["dir"], [], False, allow_data_change)
    except UserError as e:
        raise UserError(f"job {job['num']} cannot be resumed, so nothing was run: {e}") from None


def _resume(plan, label: str, console: Console) -> bool:
    """Continue one interrupted job in its folder, as ``dltrain resume JOB`` does; False when
    it could not (said in one line; the folder keeps its last.pt)."""
    from dltrain.train.loop import TrainingInterrupted
    from dltrain.train.run import run_training

    try:
        summary = run_training(plan.config, plan.root, console, resume=True, event=plan.event,
                               command=launch.invocation)
    except TrainingInterrupted as e:
        launch.interrupted(plan.root, e.signum)  # says so, and exits 130 or 143
    except UserError as e:
        report(UserError(f"{label} could not be resumed: {e}"))
        return False
    if summary["status"] == "failed":
        report(UserError(f"{label} failed: {summary.get('reason')}"))
    return True


def _varied(jobs: List[Dict[str, Any]]) -> List[str]:
    keys = sorted({k for j in jobs for k in j["params"]})
    return [k for k in keys if len({repr(j["params"].get(k)) for j in jobs}) > 1]


def _describe(job: Dict[str, Any], varied: List[str]) -> str:
    return " ".join(f"{k}={job['params'].get(k)}" for k in varied)


def _plan_line(sweep_dir: Path, jobs, todo, plans) -> str:
    """e.g. 'resuming sweep S (3 jobs): 1 completed (kept), 1 interrupted (resumed from
    last.pt: job 1), 1 not started (started now: job 2)'."""
    def numbers(items) -> str:
        names = [str(j["num"]) for j in items]
        return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")

    kept: Dict[str, int] = {}
    for job in jobs:
        if job not in todo:
            kept[job["status"]] = kept.get(job["status"], 0) + 1
    parts = [f"{n} {status} (kept)" for status, n in kept.items()]
    resumed = [j for j in todo if j["num"] in plans]
    started = [j for j in todo if j["num"] not in plans]
    if resumed:
        parts.append(f"{len(resumed)} interrupted (resumed from last.pt: job {numbers(resumed)})")
    if started:
        parts.append(f"{len(started)} not started (started now: job {numbers(started)})")
    return f"resuming sweep {sweep_dir} ({len(jobs)} jobs): " + ", ".join(parts)


@contextlib.contextmanager
def _hydra_context(sweep_dir: Path) -> Iterator[Any]:
    """A function that runs a job of the sweep that never started, as Hydra's basic launcher
    runs a job: its config from the sweep's record plus the job's overrides, its folder from
    hydra.sweep.dir and subdir, its .hydra/ record, and dltrain's task function."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import (
        Callbacks,  # what Hydra's own launchers are handed
    )
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from hydra.types import HydraContext
    from omegaconf import OmegaConf, open_dict

    launch._setup_hydra()
    setup_globals()
    master = OmegaConf.load(sweep_dir / sweeps.RECORD)
    with initialize_config_dir(str(launch.config_dir()), version_base="1.3",
                               job_name=str(OmegaConf.select(master, "hydra.job.name") or "dltrain")):
        loader = GlobalHydra.instance().config_loader()
        context = HydraContext(config_loader=loader, callbacks=Callbacks(master))

        def start(job: Dict[str, Any]) -> None:
            config = loader.load_sweep_config(master, list(job["overrides"]))
            with open_dict(config):
                config.hydra.job.id = job["num"]
                config.hydra.job.num = job["num"]
                # the folder as it is now (the record may hold a relative or timestamped path)
                config.hydra.sweep.dir = str(sweep_dir)
            folder = Path(str(sweep_dir)) / str(OmegaConf.select(config, "hydra.sweep.subdir"))
            _check_free(folder, job)
            result = run_job(hydra_context=context, task_function=launch.train_task,
                             config=config, job_dir_key="hydra.sweep.dir",
                             job_subdir_key="hydra.sweep.subdir")
            if result.status == JobStatus.FAILED:  # train_task records failures; this is a bug
                raise result.return_value

        yield start


def _check_free(folder: Path, job: Dict[str, Any]) -> None:
    """A job that never started may have a folder (stopped before its first checkpoint), but
    never one that holds another job."""
    if not (folder / sweeps.OVERRIDES).is_file():
        return
    held = sweeps.read_job(folder)
    if held["overrides"] != job["overrides"] or held["status"] != sweeps.NOT_STARTED:
        raise UserError(f"{folder} holds another job ({' '.join(held['overrides'])}), not job "
                        f"{job['num']} of the sweep's record ({' '.join(job['overrides'])}); "
                        "nothing more was run")
