"""The direction of an Optuna search: the way trainer.monitor improves.

Each sweep job returns the best value of trainer.monitor (``launch.train_task``), so the study must
minimize it for ``val_loss``/``val_mae`` and maximize it for ``val_acc``/``val_r2``, the same way
best.pt and early stopping read it. ``configs/hpo/*.yaml`` set
``hydra.sweeper.direction: ${dltrain_direction:${trainer.monitor},${trainer.mode}}`` (the
resolver is registered in ``launch._setup_hydra``), and :class:`DirectionCheck` refuses a sweep whose
direction was set by hand the other way, before any job runs.
The search itself is dltrain's Optuna sweeper (``hydra/sweeper=dltrain_optuna``, the plugin in
``hydra_plugins/dltrain_optuna``). What its sweeper, its jobs, ``dltrain summary`` and
``dltrain resume`` share lives here: where the study is kept (an Optuna RDB storage; by default
SQLite in the sweep folder, in WAL mode with a busy timeout so that several processes can share it),
which trials count towards ``n_trials``, which running trial was left behind by a process that
stopped, and the table's rows of a study.

No torch here: this runs on the way to Hydra's own flags. Optuna is imported where a study is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from dltrain import schema
from dltrain.console import report
from dltrain.errors import UserError
from dltrain.registry import unknown_name

RESOLVER = "dltrain_direction"
DIRECTIONS = {"min": "minimize", "max": "maximize"}
_OBJECTIVE_KEYS = ("trainer.monitor", "trainer.mode")


def direction(monitor: Any, mode: Any) -> str:
    """Optuna's direction for a job that returns the best ``monitor`` (``mode`` min|max|auto)."""
    trainer = schema.TrainerConfig(monitor=str(monitor), mode=str(mode))
    # schema.resolve_monitor is the rule the jobs follow; a metric has one mode in every task
    for task in schema.MONITORS:
        try:
            _, resolved = schema.resolve_monitor(trainer, task)
        except UserError:
            continue
        if resolved not in DIRECTIONS:
            raise UserError(f"trainer.mode={mode}: use one of: auto, {', '.join(DIRECTIONS)}")
        return DIRECTIONS[resolved]
    known = sorted({"auto", *(m for ms in schema.MONITORS.values() for m in ms)})
    raise UserError(f"trainer.monitor={monitor} is not a metric dltrain knows; "
                    f"use one of: {', '.join(known)}")


def _swept_objective_keys(config: DictConfig) -> List[str]:
    """trainer.monitor / trainer.mode when the sweep varies them (one study, one direction)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    swept = {str(k) for k in params} | {o.key_or_group for o in overrides if o.is_sweep_override()}
    return [key for key in _OBJECTIVE_KEYS if key in swept]


def check_direction(config: DictConfig) -> None:
    """Raise unless the sweeper's direction is the way trainer.monitor improves."""
    sweeper = config.hydra.sweeper
    if "direction" not in sweeper:  # not an Optuna sweep
        return
    swept = _swept_objective_keys(config)
    if swept:
        raise UserError(f"{' and '.join(swept)} cannot vary within one Optuna search: its "
                        "objective has one direction; run one search per monitored metric")
    monitor, mode = config.trainer.monitor, config.trainer.mode
    expected = direction(monitor, mode)  # first: a bad monitor is named here, not in a resolver
    configured = sweeper.direction
    directions = list(configured) if OmegaConf.is_list(configured) else [configured]
    if [getattr(d, "name", str(d)) for d in directions] != [expected]:  # name: Optuna's enum
        raise UserError(
            f"hydra.sweeper.direction={configured} contradicts trainer.monitor={monitor}, which "
            f"is {expected}d (trainer.mode={mode}): the search would favour worse models. Leave "
            "hydra.sweeper.direction out: it follows trainer.monitor and trainer.mode")


try:  # Hydra calls this before the sweeper starts (configured in configs/hpo/*.yaml)
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object


class DirectionCheck(_HydraCallback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_direction(config)
        except UserError as e:
            report(e)
            # Hydra turns a callback's exception into a warning and sweeps on; an exit it passes
            sys.exit(e.exit_code)


# ---------------------------------------------------------------------------------------------
# dltrain's Optuna sweeper (hydra_plugins/dltrain_optuna): its study, shared by the sweeper, the
# trials' jobs, dltrain summary and dltrain resume
SWEEPER = "dltrain_optuna"  # its hydra/sweeper option
STUDY_RECORD = "study.yaml"  # in the sweep folder: the storage and name of its study
DEFAULT_DB = "optuna.db"  # the storage when none is named: SQLite in the sweep folder
DEFAULT_STUDY = "dltrain"
# a trial's identity, handed to its job through hydra.job.env_set (every launcher applies it):
# "NUMBER:ID" (the trial's number in the study, its id in the storage), and ":continue" when the
# trial was stopped and its job resumes from last.pt. The study is the one of the job's sweep
# folder (STUDY_RECORD)
TRIAL_ENV = "DLTRAIN_OPTUNA_TRIAL"
CONTINUE = "continue"
# the trials' user attributes (optuna-dashboard shows them too)
DIR_ATTR = "dltrain_dir"  # the job's run folder
STATUS_ATTR = "dltrain_status"  # how the job ended: completed, early_stopped, pruned, failed
REASON_ATTR = "dltrain_reason"  # why it failed or was pruned
OVERRIDES_ATTR = "dltrain_overrides"  # the job's overrides: the trial's parameters and the fixed ones
OWNER_ATTR = "dltrain_owner"  # the sweeper process that runs it: host, pid, start time
SURPLUS = "surplus"  # asked past n_trials in a race between machines: failed unrun, not counted
SQLITE_TIMEOUT_S = 60  # how long a process waits for another's write to an SQLite study
PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


def register_sweeper() -> None:
    """Make dltrain's sweeper known to Hydra. Hydra finds plugins by scanning the hydra_plugins
    package, which an editable install (pip install -e) hides from the scan; a class registered
    by hand is found either way."""
    try:
        from hydra.core.plugins import Plugins

        from hydra_plugins.dltrain_optuna.dltrain_optuna_sweeper import (
            DltrainOptunaSweeper,
        )
    except ImportError:  # installed before the plugin existed: pip install -e . again
        return
    Plugins.instance().register(DltrainOptunaSweeper)


def quote(value: Any) -> str:
    """``value`` as a quoted string in Hydra's override grammar (paths, URLs: any character)."""
    import re

    text = str(value)
    # a quote is escaped with a backslash, and the backslashes before a quote are doubled
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return f"'{text}'"


def sqlite_path(url: str) -> Optional[Path]:
    """The file of an SQLite URL (``sqlite:///rel.db``, ``sqlite:////abs.db``), else None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        return None
    return Path(url[len(prefix):].split("?", 1)[0])


def storage_url(configured: Optional[str], sweep_dir: Path) -> str:
    """The study's storage: the one named (an SQLite file made absolute, so that jobs started
    elsewhere find it), else SQLite in the sweep folder."""
    if not configured:
        return f"sqlite:///{(Path(sweep_dir) / DEFAULT_DB).resolve()}"
    url = str(configured)
    if "://" not in url:
        raise UserError(f"hydra.sweeper.storage={url} is not a database URL; name one such as "
                        f"sqlite:///search.db or postgresql://user@host/db, or leave it out "
                        f"for SWEEP_DIR/{DEFAULT_DB}")
    path = sqlite_path(url)
    if path is not None and not path.is_absolute():
        query = url.partition("?")[2]
        url = f"sqlite:///{path.resolve()}" + (f"?{query}" if query else "")
    return url


def open_storage(url: str, create: bool = True) -> Any:
    """Optuna's storage at ``url``. SQLite is opened for several processes: WAL mode (readers
    do not wait for a writer) and a busy timeout, so that a write waits for another's instead
    of failing with 'database is locked'. Without ``create``, a missing SQLite file is an error
    (reading a study must not leave an empty database behind)."""
    import optuna

    path = sqlite_path(url)
    kwargs: Dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            if not create:
                raise UserError(f"the study's database {path} is not there")
            path.parent.mkdir(parents=True, exist_ok=True)
        import sqlite3

        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")  # persists in the file
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError as e:  # the database's driver (psycopg2, pymysql) is not installed
        raise UserError(f"cannot open the study's storage {url}: {e.__cause__ or e}") from None


@contextlib.contextmanager
def host_lock(url: str) -> Iterator[None]:
    """Serialize, among this machine's processes, what must not interleave on one study: creating
    an SQLite database, counting its trials and asking for the next ones, claiming a trial left
    behind. A file lock in the temporary folder: the kernel drops it when its holder dies."""
    import fcntl

    key = hashlib.sha1(url.encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"dltrain-optuna-{key}.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def make_pruner(spec: Any, epochs: int) -> Any:
    """The pruner ``hydra.sweeper.pruner`` names (the sweeper and every job build the same)."""
    import optuna

    name = str(spec.name)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.n_startup_trials,
                                           n_warmup_steps=spec.n_warmup_steps,
                                           interval_steps=spec.interval_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource,
                                              max_resource=spec.max_resource or epochs,
                                              reduction_factor=spec.reduction_factor)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError("hydra.sweeper.pruner.name: " + unknown_name("pruner", name, PRUNERS))


def make_sampler(spec: Any, seed: Optional[int]) -> Any:
    import warnings

    import optuna

    name = str(spec.name)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate, constant_liar: experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials,
                                              multivariate=spec.multivariate,
                                              constant_liar=spec.constant_liar)
    raise UserError("hydra.sweeper.sampler.name: " + unknown_name("sampler", name, SAMPLERS))


def load_study(url: str, name: str, **kwargs: Any) -> Any:
    import optuna

    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        raise UserError(f"there is no study {name!r} in {url}") from None


def owner() -> Dict[str, Any]:
    """This process, as a trial's owner: a trial whose owner is gone was left behind."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _started(os.getpid())}


def _started(pid: int) -> Optional[str]:
    """When process ``pid`` started (Linux), which tells a reused PID from its first holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, after the command in parentheses


def owner_alive(who: Any) -> bool:
    """Whether the process that owns a trial still runs. Another machine's processes cannot be
    seen from here: they are taken to be alive."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return True
    pid = who.get("pid")
    if pid is None:  # released: its job was stopped, and the sweeper went on without it
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return who.get("start") is None or _started(int(pid)) == who.get("start")


def counts(trial: Any) -> bool:
    """Whether a trial counts towards n_trials: every trial the study holds, finished (completed,
    pruned, failed) or running (a stopped trial is continued, not replaced), except those asked
    past n_trials in a race between machines, and those enqueued but not yet started."""
    from optuna.trial import TrialState

    if trial.state == TrialState.WAITING:
        return False
    return not (trial.state == TrialState.FAIL and trial.user_attrs.get(STATUS_ATTR) == SURPLUS)


def left_behind(trial: Any, released: Sequence[int] = ()) -> bool:
    """A running trial whose sweeper process on this machine is gone (stopped by a signal,
    killed) or released it, and whose job folder no process holds: the next search of the study
    on this machine continues it."""
    from optuna.trial import TrialState

    from dltrain import sweeps

    if trial.state != TrialState.RUNNING or trial.number in released:
        return False
    who = trial.user_attrs.get(OWNER_ATTR)
    if not isinstance(who, dict) or who.get("host") != socket.gethostname() or owner_alive(who):
        return False
    folder = trial.user_attrs.get(DIR_ATTR)
    return not folder or sweeps.lock_holder(Path(folder)) is None


def write_study_record(sweep_dir: Path, url: str, name: str) -> None:
    from dltrain.atomic import atomic_write_text

    path = Path(sweep_dir) / STUDY_RECORD
    if not path.is_file():
        atomic_write_text(path, yaml.safe_dump({"storage": url, "study_name": name},
                                               sort_keys=False))


def read_study_record(sweep_dir: Path) -> Optional[Dict[str, str]]:
    path = Path(sweep_dir) / STUDY_RECORD
    try:
        record = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(record, dict) or not {"storage", "study_name"} <= set(record):
        return None
    return {"storage": str(record["storage"]), "study_name": str(record["study_name"])}


def trial_env(hydra_cfg: Any) -> Optional[Dict[str, Any]]:
    """The trial a sweep job runs (its hydra.job.env_set names it; its sweep folder's record,
    the study), or None outside dltrain's sweeper."""
    env = OmegaConf.select(hydra_cfg, "job.env_set") or {}
    if TRIAL_ENV not in env:
        return None
    number, trial_id, *flags = str(env[TRIAL_ENV]).split(":")
    # a relative sweep folder is relative to where the search started (a cluster job may run
    # elsewhere)
    sweep_dir = Path(str(OmegaConf.select(hydra_cfg, "runtime.cwd") or ".")) / str(hydra_cfg.sweep.dir)
    record = read_study_record(sweep_dir)
    if record is None:
        raise UserError(f"{sweep_dir / STUDY_RECORD} is missing: the trial's study is unknown")
    return {**record, "number": int(number), "id": int(trial_id), "continue": CONTINUE in flags}


def study_jobs(sweep_dir: Path, folders: Dict[str, Dict[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """The table's rows of the study a search folder belongs to: one per trial, in trial order,
    whichever process and folder ran it (read from the trial's job folder where there is one,
    from the study where there is none), then any folder of ``sweep_dir`` that is no trial's.
    None when the study cannot be read: the table then lists the folders alone."""
    from dltrain import sweeps

    record = read_study_record(sweep_dir)
    if record is None:
        return None
    try:
        from optuna.trial import TrialState

        study = load_study(record["storage"], record["study_name"])
        trials = study.get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - no optuna, a missing file, a server that is down
        return None
    folders = dict(folders)
    here = Path(sweep_dir).resolve()
    jobs = []
    for trial in trials:
        if not counts(trial) and trial.state != TrialState.WAITING:
            continue
        # the trial's job folder: named in the trial (by the job), else SWEEP_DIR/NUMBER
        folder = trial.user_attrs.get(DIR_ATTR)
        if not folder and str(trial.number) in folders:
            folder = str(here / str(trial.number))
        job = None
        if folder and Path(folder).parent == here and Path(folder).name in folders:
            job = folders.pop(Path(folder).name)
        elif folder and (Path(folder) / ".hydra").is_dir():
            job = sweeps.read_job(Path(folder))
        if job is None:  # run elsewhere, or not started: what the study knows of it
            overrides = [str(o) for o in trial.user_attrs.get(OVERRIDES_ATTR) or
                         [f"{name}={value}" for name, value in trial.params.items()]]
            who = trial.user_attrs.get(OWNER_ATTR)
            job = {"dir": folder or "", "overrides": overrides,
                   "params": sweeps._params(overrides), "status": _state_status(trial),
                   **({"pid": _process(who)} if isinstance(who, dict) else {}),
                   **({"reason": trial.user_attrs[REASON_ATTR]}
                      if REASON_ATTR in trial.user_attrs else {})}
        elif job["status"] == sweeps.NOT_STARTED and trial.state == TrialState.RUNNING:
            job = {**job, "status": _state_status(trial)}  # asked, its job about to start
        jobs.append({**job, "job": str(trial.number), "num": trial.number})
    return jobs + list(folders.values())


def _process(who: Dict[str, Any]) -> str:
    """The process that runs a trial, as the table names it: its PID (and host, when another)."""
    host = "" if who.get("host") == socket.gethostname() else f" on {who.get('host')}"
    return f"{who.get('pid')}{host}"


def _state_status(trial: Any) -> str:
    """A trial's status from the study alone (its job folder is not here)."""
    from optuna.trial import TrialState

    from dltrain import sweeps

    if trial.state == TrialState.RUNNING:
        return sweeps.RUNNING if owner_alive(trial.user_attrs.get(OWNER_ATTR)) else sweeps.NOT_STARTED
    if trial.state == TrialState.WAITING:
        return sweeps.NOT_STARTED
    status = trial.user_attrs.get(STATUS_ATTR)
    if status:
        return str(status)
    return {TrialState.COMPLETE: "completed", TrialState.PRUNED: sweeps.PRUNED}.get(
        trial.state, sweeps.FAILED)


# Hydra composes `hydra/sweeper: dltrain_optuna` from the ConfigStore entry this import makes;
# dltrain imports this module (launch._setup_hydra) before Hydra starts
register_sweeper()
