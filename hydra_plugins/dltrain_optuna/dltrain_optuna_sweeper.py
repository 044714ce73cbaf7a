"""``hydra/sweeper=dltrain_optuna``: Optuna search whose trials prune, whose study persists in a
database, and which several processes or machines can share.

Hydra's own Optuna sweeper keeps the trial to itself (a job only returns a number, so it cannot
prune), forgets the study unless given a storage, and runs on Optuna 2 (whose database layer no
longer works with SQLAlchemy 2). This sweeper asks Optuna for each trial, hands the trial's identity
to its job through ``hydra.job.env_set`` (every launcher applies it: basic, joblib, submitit), and
the job reopens the study from the database to report its monitored metric after every epoch and
to ask the pruner (``hydra_plugins.dltrain_optuna._trial``). The sweeper then tells the study how
the trial ended: COMPLETE, PRUNED or FAIL (``_search``).

Samplers and pruners are chosen by name, with typed options: no config can make dltrain import an
arbitrary class. This module is imported by Hydra's plugin scan and by ``dltrain.hpo`` on every
start: it imports neither optuna nor torch.
"""

# no `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses look up string annotations
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

NAME = "dltrain_optuna"  # the hydra/sweeper option (configs/hpo/*.yaml)


@dataclass
class SamplerConf:
    # tpe (Optuna's default: models good and bad trials) or random
    name: str = "tpe"
    # a repeatable search; a process joining a study that already holds trials draws with
    # seed + their number, so processes sharing a study do not repeat each other's draws
    seed: Optional[int] = None
    # tpe: trials drawn at random before TPE models the results
    n_startup_trials: int = 10
    # tpe: model the parameters jointly rather than one by one
    multivariate: bool = False
    # tpe: treat running trials as bad, so parallel workers (n_jobs, shared studies) spread out
    constant_liar: bool = False


@dataclass
class PrunerConf:
    # median (stop a trial whose value is worse than the median of earlier trials at the same
    # epoch), hyperband (successive halving over several budgets) or none
    name: str = "median"
    # median: trials that run to the end before any is pruned
    n_startup_trials: int = 5
    # median: epochs a trial always runs before it can be pruned
    n_warmup_steps: int = 0
    # median: epochs between two pruning checks
    interval_steps: int = 1
    # hyperband: the fewest epochs a trial runs
    min_resource: int = 1
    # hyperband: the most epochs a trial runs; null: trainer.epochs
    max_resource: Optional[int] = None
    # hyperband: 1 in reduction_factor trials goes on to the next budget
    reduction_factor: int = 3


@dataclass
class DltrainOptunaSweeperConf:
    _target_: str = "hydra_plugins.dltrain_optuna.dltrain_optuna_sweeper.DltrainOptunaSweeper"
    # minimize or maximize; configs/hpo/*.yaml derive it from trainer.monitor (dltrain.hpo)
    direction: Any = "minimize"
    # an Optuna RDB URL (sqlite:///search.db, postgresql://...); null: SWEEP_DIR/optuna.db.
    # Name one to continue a study by running the same command again, or to share it
    storage: Optional[str] = None
    # the study within the storage; null: dltrain
    study_name: Optional[str] = None
    # the trials the study holds when the search is done, counting those of earlier runs and of
    # other processes sharing it (completed, pruned, failed, or still running)
    n_trials: int = 20
    # trials launched together (with a parallel launcher: hydra/launcher=joblib)
    n_jobs: int = 1
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # the search space: key: choice(...) | range(...) | interval(...) | tag(log, interval(...))
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name=NAME, node=DltrainOptunaSweeperConf,
                             provider="dltrain")


class DltrainOptunaSweeper(Sweeper):
    def __init__(self, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, sampler: DictConfig, pruner: DictConfig,
                 params: Optional[DictConfig]) -> None:
        self.options = dict(direction=direction, storage=storage, study_name=study_name,
                            n_trials=n_trials, n_jobs=n_jobs, sampler=sampler, pruner=pruner,
                            params=params)
        self.search: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from ._search import Search  # optuna is imported when a search starts

        self.search = Search(hydra_context=hydra_context, task_function=task_function,
                             config=config, **self.options)

    def sweep(self, arguments: List[str]) -> None:
        self.search.run(arguments)
