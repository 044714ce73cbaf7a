"""The search loop of dltrain's Optuna sweeper: ask, launch, tell.

Each round, under a lock this machine's processes share (``dltrain.hpo.host_lock``):

1. a running trial that a process of this machine left behind (stopped by a signal, killed) is
   claimed and continued: in its job folder from checkpoints/last.pt when it has one, from the
   start when it has none; one whose job had finished is told its result;
2. otherwise, while the study holds fewer than ``n_trials`` trials (finished or running, its
   other processes' included), up to ``n_jobs`` new trials are asked for.

The trials are launched as Hydra jobs, each with its identity in ``hydra.job.env_set`` and its
folder named by its trial number; the jobs report every epoch to the study and stop when the
pruner says so. Then each trial is told how its job ended, read from the job's summary.json:
COMPLETE with the best value of trainer.monitor, PRUNED, or FAIL. A trial whose job was stopped by
a signal stays RUNNING: the next run of the search continues it (dltrain resume SWEEP_DIR, or the
same command with the same storage).
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from dltrain import hpo, runs
from dltrain.console import err_console, report
from dltrain.errors import UserError

log = logging.getLogger(__name__)

RESULTS = "optimization_results.yaml"  # as Hydra's Optuna sweeper names it
FINISHED = ("completed", "early_stopped")


@dataclass
class Planned:
    """A trial to launch: new, or one left behind that is continued."""

    number: int
    trial_id: int
    overrides: List[str]
    folder: Optional[Path] = None  # its job folder when it has one already
    resume: bool = False  # continue from the folder's checkpoints/last.pt


class Search:
    def __init__(self, *, hydra_context: HydraContext, task_function: TaskFunction,
                 config: DictConfig, direction: Any, storage: Optional[str],
                 study_name: Optional[str], n_trials: int, n_jobs: int, sampler: DictConfig,
                 pruner: DictConfig, params: Optional[DictConfig]) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.direction = str(getattr(direction, "name", direction))
        self.storage, self.study_name = storage, study_name or hpo.DEFAULT_STUDY
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.sampler, self.pruner, self.params = sampler, pruner, params or {}
        self.url = ""
        self.seeded = False
        # trials whose jobs this process saw stopped (a cancelled cluster job): another run of
        # the search continues them, not this one
        self.released: Set[int] = set()

    def run(self, arguments: List[str]) -> None:
        try:
            self._run(arguments)
        except UserError as e:  # Hydra would print a traceback
            report(e)
            sys.exit(e.exit_code)

    # -----------------------------------------------------------------------------------------
    def _run(self, arguments: List[str]) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise UserError(f"hydra.sweeper.direction={self.direction}: use minimize or maximize "
                            "(or leave it out: it follows trainer.monitor)")
        space, fixed = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        if not space:
            raise UserError("the search has nothing to search: give hydra.sweeper.params (as "
                            "configs/hpo/*.yaml do) or a swept override such as "
                            "optim.lr=tag(log,interval(1e-4,1e-1))")
        epochs = int(OmegaConf.select(self.config, "trainer.epochs") or 1)
        pruner = hpo.make_pruner(self.pruner, epochs)
        sampler = hpo.make_sampler(self.sampler, self.sampler.seed)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.url = hpo.storage_url(self.storage, self.sweep_dir)
        with hpo.host_lock(self.url):
            storage = hpo.open_storage(self.url)
            study = optuna.create_study(storage=storage, study_name=self.study_name,
                                        direction=self.direction, sampler=sampler, pruner=pruner,
                                        load_if_exists=True)
        if study.direction.name.lower() != self.direction:
            raise UserError(f"the study {self.study_name!r} in {self.url} is to "
                            f"{study.direction.name.lower()}, but this search is to "
                            f"{self.direction} trainer.monitor: name another study "
                            f"(hydra.sweeper.study_name=...)")
        record = self.sweep_dir / "multirun.yaml"  # what dltrain summary and resume read
        if not record.is_file():
            OmegaConf.save(self.config, record)
        hpo.write_study_record(self.sweep_dir, self.url, self.study_name)
        log.info(f"Study name: {self.study_name}")
        log.info(f"Storage: {self.url}")
        log.info(f"Sampler: {type(sampler).__name__}, pruner: {type(pruner).__name__}")
        log.info(f"Directions: ['{self.direction}']")

        while True:
            with hpo.host_lock(self.url):
                batch = self._next(study, space, fixed)
            if not batch:
                break
            self._launch(study, batch)
        self._results(study)

    # -----------------------------------------------------------------------------------------
    def _next(self, study: optuna.Study, space: Dict[str, BaseDistribution],
              fixed: Dict[str, str]) -> List[Planned]:
        """The next trials to launch (empty when the study holds n_trials)."""
        trials = study.get_trials(deepcopy=False)
        storage = study._storage  # noqa: SLF001 - Optuna's storage API, for trials by id
        batch: List[Planned] = []
        for trial in trials:
            if len(batch) == self.n_jobs:
                break
            if not hpo.left_behind(trial, self.released):
                continue
            storage.set_trial_user_attr(trial._trial_id, hpo.OWNER_ATTR, hpo.owner())  # noqa: SLF001
            planned = self._continued(study, trial, fixed)
            if planned is not None:
                batch.append(planned)
        if batch:
            return batch
        if not self.seeded:
            self._seed(study, len(trials))
        held = sum(hpo.counts(t) for t in trials)
        for _ in range(min(self.n_jobs, self.n_trials - held)):
            trial = study.ask()
            params = {name: suggest(trial, name, dist) for name, dist in space.items()}
            storage.set_trial_user_attr(trial._trial_id, hpo.OWNER_ATTR, hpo.owner())  # noqa: SLF001
            if self._surplus(study, trial.number):
                continue
            job = overrides(params, fixed)
            trial.set_user_attr(hpo.OVERRIDES_ATTR, job)
            batch.append(Planned(trial.number, trial._trial_id, job))  # noqa: SLF001
        return batch

    def _seed(self, study: optuna.Study, held: int) -> None:
        """A process that joins a study holding trials draws with seed + their number: processes
        sharing a study must not all draw what the first one drew."""
        self.seeded = True
        seed = self.sampler.seed
        if seed is not None and held:
            study.sampler = hpo.make_sampler(self.sampler, int(seed) + held)

    def _surplus(self, study: optuna.Study, number: int) -> bool:
        """Whether another machine asked for the last trials at the same time as this one (this
        machine's processes take turns): the trial is then failed unrun, and not counted."""
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        if sum(hpo.counts(t) for t in earlier) < self.n_trials:
            return False
        storage = study._storage  # noqa: SLF001
        trial_id = next(t._trial_id for t in study.get_trials(deepcopy=False)  # noqa: SLF001
                        if t.number == number)
        storage.set_trial_user_attr(trial_id, hpo.STATUS_ATTR, hpo.SURPLUS)
        study.tell(number, state=TrialState.FAIL)
        return True

    def _continued(self, study: optuna.Study, trial: FrozenTrial,
                   fixed: Dict[str, str]) -> Optional[Planned]:
        """A trial left behind: told its result when its job had finished, else planned again."""
        folder = Path(trial.user_attrs[hpo.DIR_ATTR]) if hpo.DIR_ATTR in trial.user_attrs else None
        summary = read_summary(folder) if folder is not None else {}
        if summary.get("status") not in (None, "interrupted"):
            log.info(f"Trial {trial.number} had finished in {folder}: telling the study")
            self._tell(study, trial.number, trial._trial_id, summary)  # noqa: SLF001
            return None
        if folder is not None and (folder / ".hydra" / "overrides.yaml").is_file():
            saved = [str(o) for o in yaml.safe_load((folder / ".hydra" / "overrides.yaml")
                                                    .read_text()) or []]
        else:  # asked, but its job never started
            saved = overrides(trial.params, fixed)
            folder = None
        resume = folder is not None and (folder / runs.CHECKPOINTS / runs.LAST).is_file()
        how = "from its checkpoints/last.pt" if resume else "from the start"
        log.info(f"Continuing trial {trial.number}, stopped before it finished, {how}"
                 + (f" ({folder})" if folder else ""))
        return Planned(trial.number, trial._trial_id, saved, folder, resume)  # noqa: SLF001

    # -----------------------------------------------------------------------------------------
    def _launch(self, study: optuna.Study, batch: Sequence[Planned]) -> None:
        jobs = [[*p.overrides, *self._identity(p)] for p in batch]
        try:
            # Hydra's job numbers (#N in its log lines) are the trials' numbers
            returns = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException:
            # a signal stopped a job (Ctrl-C, SIGTERM): its trial stays running, and this
            # process's end leaves it behind for the next run of the search to continue
            again = ("" if self.storage is None else
                     "\nor run the same command again (its study is in hydra.sweeper.storage)")
            err_console.print("the search is not finished; continue it with:\n"
                              f"  dltrain resume {shlex.quote(str(self.sweep_dir))}{again}",
                              markup=False)
            raise
        for planned, ret in zip(batch, returns):
            folder = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
            summary = read_summary(folder)
            if ret.status == JobStatus.FAILED:  # train_task records failures: a bug, recorded
                error = ret._return_value  # noqa: SLF001 - .return_value re-raises it
                summary = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
            self._tell(study, planned.number, planned.trial_id, summary, folder)

    def _identity(self, planned: Planned) -> List[str]:
        """The overrides that place a trial's job (its folder: SWEEP_DIR/NUMBER, or the folder
        it ran in before) and hand it the trial, through hydra.job.env_set (the study is the
        one its sweep folder's study.yaml names)."""
        if planned.folder is not None:
            place = [f"hydra.sweep.dir={hpo.quote(planned.folder.parent)}",
                     f"hydra.sweep.subdir={hpo.quote(planned.folder.name)}"]
        else:
            place = [f"hydra.sweep.subdir={planned.number}"]
        trial = f"{planned.number}:{planned.trial_id}" + (f":{hpo.CONTINUE}" if planned.resume else "")
        return [*place, f"++hydra.job.env_set.{hpo.TRIAL_ENV}={trial}"]

    def _tell(self, study: optuna.Study, number: int, trial_id: int,
              summary: Dict[str, Any], folder: Optional[Path] = None) -> None:
        """Tell the study how a trial's job ended (its summary.json, in ``folder``)."""
        storage = study._storage  # noqa: SLF001
        if folder is not None:  # the job names it when it starts; one that failed first did not
            storage.set_trial_user_attr(trial_id, hpo.DIR_ATTR, str(folder.resolve()))
        status = summary.get("status")
        reason = summary.get("reason")
        value = summary.get(f"best_{summary.get('monitor')}")
        if status == "interrupted":  # a cancelled cluster job: continued by the next run
            self.released.add(number)
            storage.set_trial_user_attr(trial_id, hpo.OWNER_ATTR, {**hpo.owner(), "pid": None})
            return
        if status in FINISHED and not (isinstance(value, (int, float)) and math.isfinite(value)):
            status, reason = "failed", f"no finite best {summary.get('monitor')} ({value})"
        if status is None:
            status, reason = "failed", "the job wrote no summary.json"
        storage.set_trial_user_attr(trial_id, hpo.STATUS_ATTR, status)
        if reason:
            storage.set_trial_user_attr(trial_id, hpo.REASON_ATTR, str(reason))
        if status in FINISHED:
            study.tell(number, float(value))
        elif status == "pruned":
            study.tell(number, state=TrialState.PRUNED)
        else:
            study.tell(number, state=TrialState.FAIL)

    def _results(self, study: optuna.Study) -> None:
        """The best trial so far, as Hydra's Optuna sweeper reports it (optimization_results.yaml)."""
        held = [t for t in study.get_trials(deepcopy=False) if hpo.counts(t)]
        states = {s: sum(t.state == s for t in held) for s in TrialState}
        log.info(f"Study {self.study_name}: {len(held)} of {self.n_trials} trials ("
                 + ", ".join(f"{n} {s.name.lower()}" for s, n in states.items() if n) + ")")
        try:
            best = study.best_trial
        except ValueError:  # no trial completed
            log.info("No trial completed")
            return
        log.info(f"Best parameters: {best.params}")
        log.info(f"Best value: {best.value}")
        OmegaConf.save(OmegaConf.create({
            "name": "optuna", "best_params": best.params, "best_value": best.value,
            "best_trial": best.number, "study_name": self.study_name, "storage": self.url,
        }), self.sweep_dir / RESULTS)


# ---------------------------------------------------------------------------------------------
def search_space(arguments: Sequence[str]) -> Tuple[Dict[str, BaseDistribution], Dict[str, str]]:
    """Optuna's distributions of the swept overrides, and the fixed overrides as typed."""
    space: Dict[str, BaseDistribution] = {}
    fixed: Dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        name = override.get_key_element()
        if override.is_sweep_override():
            space[name] = distribution(override)
            fixed.pop(name, None)
        else:
            fixed[name] = override.get_value_element_as_str()
            space.pop(name, None)
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    """choice(...) → categorical; range(a, b, step) → integers (or its values, for floats);
    interval(a, b) → floats, on a log scale with tag(log, ...)."""
    key = override.get_key_element()
    if override.is_choice_sweep() or (override.is_range_sweep() and override.value().shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise UserError(f"{override.input_line}: the range is empty")
        if all(isinstance(v, int) for v in values):
            step = values[1] - values[0] if len(values) > 1 else 1
            return IntDistribution(values[0], values[-1], step=step)
        return CategoricalDistribution(values)
    if override.is_interval_sweep():
        value = override.value()
        low, high, log_scale = float(value.start), float(value.end), "log" in value.tags
        if log_scale and low <= 0:
            raise UserError(f"{override.input_line}: a log-scale interval must start above 0")
        return FloatDistribution(low, high, log=log_scale)
    raise UserError(f"{override.input_line}: {key} cannot be searched this way; use choice(...), "
                    "range(...), interval(...) or tag(log, interval(...))")


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """The trial's value of ``name`` (the enqueued one, for a trial enqueued with values)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def overrides(params: Dict[str, Any], fixed: Dict[str, str]) -> List[str]:
    return [*(f"{name}={value}" for name, value in params.items()),
            *(f"{name}={value}" for name, value in fixed.items())]


def read_summary(folder: Optional[Path]) -> Dict[str, Any]:
    try:
        return json.loads((Path(folder) / runs.SUMMARY).read_text()) if folder else {}
    except (OSError, ValueError):
        return {}
