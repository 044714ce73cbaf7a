"""``logger=mlflow``: the run in MLflow, beside metrics.csv.

- params: the flattened config (``optim.lr``; values longer than MLflow's limit are cut, with
  ``...`` at the end);
- metrics: each epoch's row at step=epoch; at the end the test metrics, ``best_<monitor>`` and
  ``best_epoch`` at the last epoch;
- artifacts: summary.json, run.yaml, curves.png, gradflow.png, and checkpoints/best.pt with
  ``logger.mlflow.log_model=true``;
- tags: ``dltrain.run_dir``, ``dltrain.git_commit`` (also as MLflow's own
  ``mlflow.source.git.commit``) and ``dltrain.git_dirty`` in a git checkout,
  ``dltrain.sweep`` and ``dltrain.job`` for a sweep's job, ``dltrain.status``, and
  ``logger.mlflow.tags``. The run is named after the run folder (``SWEEP/N`` for a job).

The store is ``logger.mlflow.tracking_uri``; by default a SQLite file, outputs/mlflow.db under
the current directory, its artifacts in outputs/mlartifacts (``mlflow ui --backend-store-uri
sqlite:///outputs/mlflow.db``). MLflow 3 refuses its older file store (./mlruns) by default.

run.yaml keeps the run id and the store (``loggers.mlflow``), and ``dltrain resume`` continues
that run: status RUNNING again; the epochs the store lacks are logged from the checkpoint's
history (a logger added at the resume gets them all); params are never changed (MLflow keeps
them write-once): a value that ``--allow-changes`` changed is tagged
``dltrain.changed.<key>``. MLflow cannot delete a metric's values: an epoch that a crashed
process logged past its checkpoint keeps that value at its step, and the resumed value is added
at the same step, later. MLflow's latest value of a metric (its runs table, its summary) is the
one of the highest step, logged last: the resumed one.

mlflow is imported when the logger is built, never before. The store is contacted then, with
short timeouts and no retries: a store that cannot be reached stops the run before training,
in one line. Later calls retry twice, 30 s each at most (MLFLOW_HTTP_REQUEST_MAX_RETRIES and
MLFLOW_HTTP_REQUEST_TIMEOUT, where set, win), before the run drops the logger with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from dltrain import runs
from dltrain.errors import UserError
from dltrain.loggers.base import (
    LOGGERS,
    final_metrics,
    one_line,
    recorded,
    run_context,
    run_name,
)

NAME = "mlflow"
DEFAULT_STORE = Path("outputs") / "mlflow.db"
ARTIFACTS = "mlartifacts"  # beside a SQLite store
# MLflow's run status for each of dltrain's
STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "failed": "FAILED",
          "interrupted": "KILLED"}
# (retries, timeout in seconds) of MLflow's HTTP requests, unless the environment sets them:
# none at the start, so that an unreachable server fails the run at once; a few later
FIRST_CONTACT = (0, 10)
LATER = (2, 30)


def resolve_uri(uri: Optional[str]) -> str:
    """The tracking URI as MLflow takes it, made absolute where it names a local file: null
    is ``sqlite:///<cwd>/outputs/mlflow.db``; a relative ``sqlite:///path`` is made absolute."""
    if uri is None:
        return f"sqlite:///{Path.cwd() / DEFAULT_STORE}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(os.path.expanduser(uri[len(prefix):]))
    return uri


def sqlite_path(uri: str) -> Optional[Path]:
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix + "/") else None


def param_value(value: Any, limit: int) -> str:
    """A config value as an MLflow param: strings as they are, the rest as JSON (null, true,
    [64, 32]); cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def _mlflow_calls(retries: int, timeout: int) -> Iterator[None]:
    """MLflow's HTTP retries and timeout for the calls inside (where the user has not set
    them), none of the deprecation warnings its SQL store raises, and a server that does not
    answer said in a few words (a ConnectionError), not in MLflow's paragraph."""
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
              "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    set_here = [key for key in wanted if key not in os.environ]
    for key in set_here:
        os.environ[key] = wanted[key]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    except UserError:
        raise
    except Exception as e:
        reason = _unreachable(e)
        if reason is None:
            raise
        raise ConnectionError(f"the tracking server {reason}") from e
    finally:
        for key in set_here:
            os.environ.pop(key, None)


@contextlib.contextmanager
def _first_contact(db: Optional[Path]) -> Iterator[None]:
    """One process at a time makes a SQLite store's tables and experiment: the jobs of a sweep
    that start side by side (joblib) would otherwise race to create them, and all but one
    fail. An OS lock on ``mlflow.db.lock`` beside the store, released however its holder ends."""
    if db is None:
        yield
        return
    import fcntl

    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


@LOGGERS.register(NAME)
class MlflowLogger:
    def __init__(self, run_dir: Path, tracking_uri: Optional[str] = None,
                 experiment: str = "dltrain", log_model: bool = False,
                 tags: Optional[Mapping[str, str]] = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError("logger=mlflow needs the mlflow package: pip install "
                            "'dltrain[tracking]' (or pip install mlflow)") from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its INFO lines
        self.run_dir = Path(run_dir)
        self.log_model = log_model
        self.user_tags = dict(tags or {})
        self.experiment = experiment
        before = recorded(self.run_dir, NAME)
        # a resume from another directory still finds the store of the run's start
        self.uri = resolve_uri(tracking_uri) if tracking_uri or not before.get("tracking_uri") \
            else before["tracking_uri"]
        self.resume_id = before.get("run_id") if before.get("tracking_uri") == self.uri else None
        self.run_id: Optional[str] = None
        self.continued = False  # the run existed: a resume
        self.epochs = 0  # the epochs the run holds
        self.params: Dict[str, str] = {}  # those already in the run
        db = sqlite_path(self.uri)
        with _mlflow_calls(*FIRST_CONTACT):
            try:
                with _first_contact(db):
                    self.client = MlflowClient(tracking_uri=self.uri)
                    found = self.client.get_experiment_by_name(experiment)
                    self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                        experiment, artifact_location=(db.parent / ARTIFACTS).as_uri() if db else None)
            except Exception as e:
                reason = _unreachable(e)
                raise UserError(
                    f"logger=mlflow cannot use its tracking store {self.uri}: "
                    f"{'the server ' + reason if reason else one_line(e)}; "
                    f"start the server, or fix logger.mlflow.tracking_uri (leave it out for "
                    f"the local store {DEFAULT_STORE})") from None

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        from mlflow.exceptions import MlflowException

        with _mlflow_calls(*LATER):
            run = None
            if self.resume_id:
                try:
                    run = self.client.get_run(self.resume_id)
                except MlflowException:  # deleted from the store: a new run takes over
                    run = None
            self.continued = run is not None and run.info.lifecycle_stage == "active"
            if self.continued:
                self.run_id = run.info.run_id
                self.params = dict(run.data.params)
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(
                    self.experiment_id, tags=self._tags(), run_name=run_name(self.run_dir)).info.run_id
            self.epochs = len(history)
            # the epochs of the checkpoint's history the run lacks: all of them for a new run
            # (a logger added at a resume), none for one that logged them
            keys = [key for key in (history[0] if history else {}) if key != "epoch"]
            logged = ({m.step for m in self.client.get_metric_history(self.run_id, keys[0])}
                      if keys and self.continued else set())
            for row in history:
                if int(row["epoch"]) not in logged:
                    self._log({k: v for k, v in row.items() if k != "epoch"}, int(row["epoch"]))

    def _tags(self) -> Dict[str, str]:
        from mlflow.tracking.context.registry import resolve_tags

        context = run_context(self.run_dir)
        tags = {f"dltrain.{key}": value for key, value in context.items()}
        if "git_commit" in context:
            tags["mlflow.source.git.commit"] = context["git_commit"]
        return resolve_tags({**tags, **self.user_tags})

    def record(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "experiment": self.experiment, "tracking_uri": self.uri}

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import (
            MAX_PARAM_VAL_LENGTH,
            MAX_PARAMS_TAGS_PER_BATCH,
        )

        values = {key: param_value(value, MAX_PARAM_VAL_LENGTH) for key, value in params.items()}
        new = [Param(key, value) for key, value in values.items() if key not in self.params]
        changed = {key: value for key, value in values.items()
                   if key in self.params and self.params[key] != value}
        with _mlflow_calls(*LATER):
            for i in range(0, len(new), MAX_PARAMS_TAGS_PER_BATCH):
                self.client.log_batch(self.run_id, params=new[i:i + MAX_PARAMS_TAGS_PER_BATCH])
            for key, value in changed.items():  # params are write-once in MLflow
                self.client.set_tag(self.run_id, f"dltrain.changed.{key}",
                                    f"{value} (from epoch {self.epochs + 1})")
        self.params.update(values)

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(value), now, step)
                                                    for key, value in metrics.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        with _mlflow_calls(*LATER):
            self._log(metrics, step)
        self.epochs = step

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        metrics = final_metrics(summary)
        with _mlflow_calls(*LATER):
            if metrics:
                self._log(metrics, int(summary.get("epochs_completed") or self.epochs))

    def log_artifact(self, path: Path) -> None:
        with _mlflow_calls(*LATER):
            self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        if self.run_id is None:  # never started
            return
        with _mlflow_calls(*LATER):
            best = self.run_dir / runs.CHECKPOINTS / runs.BEST
            if self.log_model and best.is_file():
                self.client.log_artifact(self.run_id, str(best), artifact_path=runs.CHECKPOINTS)
            self.client.set_tag(self.run_id, "dltrain.status", status)
            self.client.set_terminated(self.run_id, STATUS.get(status, "FINISHED"))


def _unreachable(error: BaseException) -> Optional[str]:
    """How the server failed to answer, when that is why MLflow failed (MLflow wraps requests'
    own exceptions, which stay in its exception's context); else None."""
    import requests

    cause: Optional[BaseException] = error
    while cause is not None:
        if isinstance(cause, requests.exceptions.Timeout):
            return "did not answer in time"
        if isinstance(cause, requests.exceptions.ConnectionError):
            return "does not answer (connection refused or unreachable)"
        cause = cause.__cause__ or cause.__context__
    return None
