"""Hydra glue: compose and validate a config, run Hydra's command line, and Hydra's task function
(one training job).

Only Hydra, OmegaConf, rich and the schema are imported up front; torch is imported when there
is something to train, so config errors answer at once.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from dltrain import distributed, runs, schema
from dltrain.console import console_for_job, err_console, report
from dltrain.errors import UserError
from dltrain.hydra_errors import clean_hydra_error, top_level_keys
from dltrain.registry import unknown_name

UID_ENV = "DLTRAIN_RUN_UID"
INVOCATION_ENV = "DLTRAIN_INVOCATION"
# the command the user typed, for run.yaml (replay hands Hydra a different command line);
# cli.main sets it, in place. A sweep job that a launcher runs in a process of its own
# (submitit) inherits it through the environment
invocation: List[str] = (shlex.split(os.environ[INVOCATION_ENV]) if INVOCATION_ENV in os.environ
                         else ["dltrain", *sys.argv[1:]])
# a replay accepted with --allow-data-change hands the differences to the run it starts (Hydra
# runs it in this process), for its run.yaml
data_changes_allowed: List[str] = []


def config_dir() -> Path:
    return Path(str(resources.files("dltrain.configs")))


def new_run_dir() -> Path:
    """A new run's folder, as train.yaml's hydra.run.dir names it."""
    import datetime

    now = datetime.datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / f"{now:%H-%M-%S}-{run_uid()}"


def run_uid() -> str:
    """A short random id for this invocation's run folder (also inherited by sweep workers)."""
    if UID_ENV not in os.environ:
        os.environ[UID_ENV] = secrets.token_hex(3)
    return os.environ[UID_ENV]


def _remove_if_untrained(run_dir: Path) -> None:
    """Drop a run folder that holds only what Hydra wrote before the run failed to start
    (a folder with checkpoints or metrics is never touched)."""
    if not run_dir.is_dir():
        return
    leftovers = {p.name for p in run_dir.iterdir()} - {".hydra", runs.LOCK}
    if all(name.endswith(".log") for name in leftovers):
        shutil.rmtree(run_dir, ignore_errors=True)
        # and the folders Hydra made for it (outputs/DATE/), up to outputs/, when left empty
        if any(p.name == "outputs" for p in run_dir.parents):
            for parent in run_dir.parents:
                if not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
                if parent.name == "outputs":
                    break


def train_task(cfg: DictConfig) -> Optional[float]:
    """Hydra's task function: one training job. Returns the best monitored validation metric,
    the objective that Hydra sweepers (Optuna) optimize.

    In a sweep a failing job is recorded as failed (summary.json) and the sweep goes on; a
    single run exits non-zero. A trial of dltrain's Optuna sweeper (its hydra.job.env_set names
    the trial) reports every epoch to its study and stops when the study's pruner says so; a
    trial that was stopped before it finished continues from its folder's last.pt.
    """
    from hydra.core.hydra_config import HydraConfig

    from dltrain import hpo

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode.name == "MULTIRUN"
    trial = None
    try:
        trial = hpo.trial_env(HydraConfig.get()) if sweeping else None
        config = schema.load_config(cfg)
        from dltrain.train.loop import (
            TrainingInterrupted,  # torch is imported here, not before
        )
        from dltrain.train.run import run_training

        try:
            record = {"data_changes_allowed": data_changes_allowed} if data_changes_allowed else None
            event = _restart_event(run_dir, config)
            callbacks = []
            if trial is not None:
                from hydra_plugins.dltrain_optuna._trial import continues, open_trial

                reporter = open_trial(trial, run_dir, HydraConfig.get().sweeper.pruner,
                                      config.trainer.epochs)
                callbacks.append(reporter)
                if event is None and continues(trial, run_dir):
                    event = {"optuna_trial": reporter.number}
            summary = run_training(config, run_dir, console_for_job(HydraConfig.get()),
                                   command=invocation, record=record, callbacks=callbacks,
                                   resume=event is not None, event=event)
        except TrainingInterrupted as e:
            if sweeping and os.environ.get("SUBMITIT_EXECUTOR"):
                # a cancelled cluster job (scancel): the launcher needs a result, or the whole
                # sweep stops without its summary; the job's summary.json says interrupted
                _say_interrupted(run_dir, e.signum)
                return math.nan
            if trial is not None:  # the search continues the trial, not a resume of its job
                import signal

                from dltrain.train.interrupt import exit_code

                name = "Ctrl-C" if e.signum == signal.SIGINT else signal.Signals(e.signum).name
                err_console.print(f"stopped by {name}: checkpoints/last.pt is saved; the search "
                                  f"continues trial {trial['number']} from it", markup=False)
                raise SystemExit(exit_code(e.signum)) from None
            interrupted(run_dir, e.signum)
    except KeyboardInterrupt:
        _remove_if_untrained(run_dir)
        raise
    except UserError as e:
        if not sweeping:
            report(e)
            _remove_if_untrained(run_dir)
            raise SystemExit(e.exit_code) from None
        summary = _record_failure(run_dir, str(e))
    except Exception as e:
        if not sweeping:
            raise
        summary = _record_failure(run_dir, f"{type(e).__name__}: {e}")
    distributed.forget(distributed.detect())
    if summary["status"] == "failed":
        report(UserError(f"training failed: {summary.get('reason')}"))
        if not sweeping:
            raise SystemExit(1)
        return math.nan  # sweepers (Optuna) record the trial as failed and go on
    return summary.get(f"best_{summary['monitor']}")


def _restart_event(run_dir: Path, config: schema.TrainConfig) -> Optional[Dict[str, int]]:
    """The resume of a job that its launcher restarted (torchrun --max-restarts, a SLURM
    requeue), when trainer.resume=auto and the run folder holds a last.pt; else None."""
    launch = distributed.detect()
    if (launch is None or not launch.restart or config.trainer.resume != "auto"
            or not (run_dir / runs.CHECKPOINTS / runs.LAST).is_file()):
        return None
    return {"restart": launch.restart}


def _record_failure(run_dir: Path, reason: str) -> Dict[str, str]:
    """A sweep job that could not train still leaves a summary.json saying why (when the disk
    has room for it: a full disk is said, and the sweep goes on)."""
    summary = {"status": "failed", "reason": reason}
    try:
        runs.write_json(run_dir / runs.SUMMARY, summary)
    except UserError as e:  # DiskFull: the summary will say "no summary.json"
        report(e)
    return summary


def interrupted(run_dir: Path, signum: int) -> None:
    """Say how to continue a run a signal stopped, and exit as the shell expects (143, 130)."""
    from dltrain.train.interrupt import exit_code

    _say_interrupted(run_dir, signum)
    raise SystemExit(exit_code(signum))


def _say_interrupted(run_dir: Path, signum: int) -> None:
    import signal

    if quiet_rank():  # rank 0 says it for the job
        return
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    err_console.print(
        f"stopped by {name}: checkpoints/last.pt is saved. Continue with:\n"
        f"  dltrain resume {shlex.quote(str(run_dir))}", markup=False)


def compose(overrides: List[str], *, sweep: bool = False) -> schema.TrainConfig:
    """The validated config of a single run (or of one job of a sweep), composed as Hydra
    would, without running it."""
    check_choices(overrides)
    for arg in overrides:
        group, _, option = arg.partition("=")
        if group == "hpo" and option not in ("", "null") and not sweep:
            raise UserError(f"{arg} is a search space for a sweep: run it with -m "
                            f"(dltrain -m {arg})")
    for override in [] if sweep else _parsed(overrides):
        if override.is_sweep_override():
            line = override.input_line
            key, _, value = line.partition("=")
            other = "" if "." not in key else (f"; for one list value write {key}=[{value}], "
                                               f"for text with commas quote it: {key}='{value}'")
            raise UserError(f"{line} names several values, a sweep: run it with -m "
                            f"(dltrain -m {line}){other}")
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _setup_hydra()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="dltrain"):
            cfg = hydra_compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(clean_hydra_error(e, overrides)) from None
    return schema.load_config(cfg)


def check_choices(overrides: Sequence[str]) -> None:
    """Refuse, in one line, an override whose group, key or option does not exist: each value of
    a sweep's list (``-m optim=sgd,adamm``), the presets (``experiment=``, ``hpo=``) and Hydra's
    own groups (``hydra/launcher=``) included. It runs before Hydra, which would otherwise print
    its config search path and leave a sweep folder holding only multirun.yaml."""
    known = top_level_keys()
    for override in _parsed(overrides):
        key = override.key_or_group
        head = re.split(r"[./\[]", key, maxsplit=1)[0]
        if override.is_delete() or (head == "hydra" and "/" not in key):
            continue
        if head != "hydra" and head not in known:
            raise UserError(unknown_name("config group or key", head, known))
        if "." in key or "[" in key:
            continue  # a value: composing checks its key and type
        options = group_options(key)
        if options is None:
            parent = key.rpartition("/")[0]
            raise UserError(unknown_name("config group", key, (
                f"{parent}/{name}" for name in group_options(parent, groups=True) or ())))
        for choice in _choices(override):
            if choice not in options:
                raise UserError(unknown_name(key, choice, options))


# a sweep is checked by composing this many of its jobs at most (each value of every swept
# key is in one of them); each job still validates its own config when it runs
MAX_CHECKED_JOBS = 32


def check_sweep(overrides: Sequence[str]) -> None:
    """Refuse a sweep with a wrong group option, key, type or value before Hydra starts it:
    compose one job per value of the longest swept list, so that every value of every swept
    key is composed and validated once (not every combination: the rules that cross keys are
    each job's own check). Ranges are enumerated; Optuna's intervals and globs are not."""
    check_choices(overrides)
    fixed: List[str] = []
    swept: List[List[str]] = []
    for override in _parsed(overrides):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - an interval (a sampler's) or a glob
            continue
        swept.append([f"{override.get_key_element()}={value}" for value in values])
    jobs = min(max((len(values) for values in swept), default=1), MAX_CHECKED_JOBS)
    for i in range(jobs):
        compose(fixed + [values[min(i, len(values) - 1)] for values in swept], sweep=True)


def _parsed(overrides: Sequence[str]) -> List[Any]:
    """Hydra's reading of ``overrides``; none where one does not parse (Hydra's compose, or
    Hydra itself, then reports the syntax error in its own words)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - OverrideParseException and the grammar's own errors
        return []


def group_options(group: str, groups: bool = False) -> Optional[List[str]]:
    """The options of a config group (or, with ``groups``, its sub-groups); None when there is
    no such group. dltrain's groups are read from the schema and configs/; Hydra's own
    (``hydra/launcher``, with its plugins' options) from Hydra's config loader."""
    if not group.startswith("hydra"):
        folder = config_dir() / group
        if groups:
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else None
        if group in schema.GROUPS:
            return list(schema.GROUPS[group])
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else None
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _setup_hydra()
    with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="dltrain"):
        loader = GlobalHydra.instance().config_loader()
        if groups:
            return sorted(loader.list_groups(group))
        parent, _, name = group.rpartition("/")
        if name not in loader.list_groups(parent):
            return None
        return sorted(loader.get_group_options(group))


def _choices(override: Any) -> List[str]:
    """The options an override chooses: one, a list (``logger=[csv,tensorboard]``) or each of a
    sweep's (``sgd,adam``, ``choice(sgd,adam)``); none for null, a glob (Hydra matches it
    against what exists) or a range (Hydra refuses it for a group)."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    if override.is_sweep_override():
        return [str(v) for v in value.list] if isinstance(value, ChoiceSweep) else []
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _setup_hydra() -> None:
    schema.register_configs()
    # cached: the id is resolved once into the config that a launcher sends to every sweep job,
    # which then needs no inherited environment to find the sweep's folder
    OmegaConf.register_new_resolver("dltrain_uid", run_uid, replace=True, use_cache=True)
    from dltrain import hpo

    OmegaConf.register_new_resolver(hpo.RESOLVER, hpo.direction, replace=True)


def check_output_dirs(argv: List[str], multirun: bool = False) -> None:
    """An explicit hydra.run.dir / hydra.sweep.dir must be creatable and must not hold a run:
    Hydra would overwrite its .hydra/ record before dltrain could refuse. Without one, the
    default outputs/ must be creatable in the current folder (Hydra would end in a traceback)."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if not any(arg.startswith(f"{key}=") for arg in argv):
        default = Path("outputs") / ("multirun" if multirun else "")
        existing = default
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            where = Path.cwd() if existing == Path(".") else existing.resolve()
            example = "/somewhere/writable/" + ("sweep" if multirun else "run")
            problem = "is not writable" if existing.is_dir() else "is a file, not a folder"
            raise UserError(f"cannot create the {'sweep' if multirun else 'run'} folder under "
                            f"outputs/: {where} {problem}; run dltrain from a writable "
                            f"folder, or give it one: {key}={example}")
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        path = Path(value)
        if key == "hydra.run.dir" and any((path / name).exists() for name in
                                          ("checkpoints", "metrics.csv", "summary.json")):
            raise UserError(f"{path} already holds a run; choose a new {key}, "
                            f"or continue that run: dltrain resume {path}")
        if key == "hydra.sweep.dir" and path.is_dir() and any((p / ".hydra").is_dir() for p in path.iterdir()):
            raise UserError(f"{path} already holds a sweep's jobs; choose a new {key}")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise UserError(f"{key}={value}: cannot create a folder there "
                            f"({existing} is {'not a folder' if not existing.is_dir() else 'not writable'}); "
                            f"choose one where you can write: {key}=/somewhere/writable")


def run_hydra(argv: List[str]) -> None:
    """Hydra's own command line: a run, a sweep (-m), or Hydra's flags (--cfg, --info, ...)."""
    import logging

    import hydra

    _setup_hydra()
    # Optuna's storage layer (alembic) logs every plugin it loads at INFO: noise in a sweep
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        args = hydra_args(argv)
        if not restarting() and writes_folders(args):  # a restarted job goes back to its own folder
            check_output_dirs(argv, multirun=bool(args and args.multirun))
        if not any(arg.startswith("-") for arg in argv):
            # a single run is validated before Hydra makes a folder for it; sweeps and Hydra's
            # flags are left to Hydra, and each job validates itself in train_task
            argv = argv + one_folder(compose(argv), argv)
        elif args is not None and not (args.config_path or args.config_dir or args.shell_completion):
            # before Hydra makes a sweep's folder; each job validates itself in train_task too
            check_sweep(args.overrides) if args.multirun else check_choices(args.overrides)
    except UserError as e:
        if not quiet_rank():
            report(e)
        sys.exit(e.exit_code)
    sys.argv = [sys.argv[0], *argv]
    os.environ[INVOCATION_ENV] = shlex.join(invocation)
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(train_task)()


def hydra_args(argv: List[str]) -> Optional[Any]:
    """Hydra's reading of its command line (flags and overrides), or None where Hydra itself
    should report what it does not understand."""
    import argparse

    from hydra._internal.utils import get_args_parser

    if "--version" in argv:  # Hydra's parser would print its own version and exit
        return None
    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        args, unknown = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):
        return None
    return None if unknown else args


def writes_folders(args: Optional[Any]) -> bool:
    """Whether Hydra will make a run or sweep folder: not for --cfg, --info, --help, -sc."""
    return args is None or not (args.help or args.hydra_help or args.cfg or args.info
                                or args.shell_completion)


# ---------------------------------------------------------------------------------------------
# a job of several processes (torchrun, srun): one run folder
def restarting() -> bool:
    launch = distributed.detect()
    return launch is not None and launch.restart > 0


def quiet_rank() -> bool:
    """Whether this process is one of a launch's others: its mistakes in the command line are
    rank 0's too, and rank 0 says them once."""
    launch = distributed.detect()
    return launch is not None and not launch.is_main


def one_folder(config: schema.TrainConfig, argv: List[str]) -> List[str]:
    """The overrides that put every process of a DDP job in rank 0's run folder, with Hydra's
    record written by rank 0 only (each process would otherwise name its own folder from its
    own clock); none for a process on its own."""
    launch = distributed.detect()
    if not distributed.check_strategy(config.trainer.strategy, launch):
        return []
    from dltrain.train.run import join

    join(config)  # the process group, to agree on the folder
    explicit = [arg.partition("=")[2] for arg in argv if arg.startswith("hydra.run.dir=")]
    proposed = explicit[-1] if explicit else str(new_run_dir())
    folder = distributed.agreed_run_dir(launch, proposed, resume=config.trainer.resume == "auto")
    return [f"hydra.run.dir={folder}"] + ([] if launch.is_main else ["hydra.output_subdir=null"])
