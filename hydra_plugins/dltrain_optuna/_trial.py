"""The job side of a trial: report the monitored metric to the study after every epoch, and stop
when the pruner says so.

The job reopens the study from its storage (``hydra.job.env_set`` names it), so this works in
whatever process or machine the launcher runs the job: the sweeper's own (basic launcher), a
joblib worker, a SLURM node. Imported by ``dltrain.launch.train_task`` in a trial's job only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import optuna

from dltrain import hpo
from dltrain.console import err_console
from dltrain.train.loop import Callback, Job, TrainingPruned


class TrialReporter(Callback):
    """After each epoch: ``trial.report(row[monitor], epoch)``, then ``trial.should_prune()``.
    A trial to prune stops as the next epoch starts, so that every hook (progress, loggers,
    checkpoints) has seen the epoch it was judged on; run.py records it as ``pruned``."""

    def __init__(self, trial: optuna.Trial, number: int, pruner: str) -> None:
        self.trial, self.number, self.pruner = trial, number, pruner
        self.verdict: Optional[str] = None
        self.warned = False

    def on_epoch_start(self, job: Job, n_batches: int) -> None:
        if self.verdict is not None:
            raise TrainingPruned(self.verdict)

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        value, epoch = float(row[job.monitor]), int(row["epoch"])
        self.trial.report(value, epoch)
        if not self.trial.should_prune():
            return
        if job.dist.distributed:  # only rank 0 reports: stopping it alone would hang the others
            if not self.warned:
                err_console.print(f"trial {self.number}: the {self.pruner} pruner would stop it; "
                                  "a job of several processes is not pruned", markup=False)
                self.warned = True
            return
        self.verdict = (f"the {self.pruner} pruner stopped trial {self.number} after epoch "
                        f"{epoch} ({job.monitor} {value:.4g})")


def open_trial(trial: Mapping[str, Any], run_dir: Path, pruner: Any, epochs: int) -> TrialReporter:
    """The reporter of ``trial`` (``dltrain.hpo.trial_env``: its study, number and id), whose
    pruner is ``pruner`` (hydra.sweeper.pruner, the sweeper's own)."""
    study = hpo.load_study(trial["storage"], trial["study_name"],
                           pruner=hpo.make_pruner(pruner, epochs),
                           # the job samples nothing; the sweeper drew the trial's parameters
                           sampler=optuna.samplers.RandomSampler())
    reporter = optuna.trial.Trial(study, trial["id"])
    reporter.set_user_attr(hpo.DIR_ATTR, str(Path(run_dir).resolve()))
    return TrialReporter(reporter, trial["number"], str(pruner.name))


def continues(trial: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether the job continues a stopped trial from its folder's last.pt."""
    from dltrain import runs

    return trial["continue"] and (Path(run_dir) / runs.CHECKPOINTS / runs.LAST).is_file()
