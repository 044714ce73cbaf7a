"""Metric loggers: where a run's numbers go besides its checkpoints.

Every logger is one class behind :class:`MetricLogger`, registered in :data:`LOGGERS` under the
name its schema option declares (``@option("logger", "csv", "tensorboard")``) and built with that
option's keys as keyword arguments. ``logger=[csv,tensorboard,mlflow]`` runs several at once;
metrics.csv is always among them. One module each: csv_file, tensorboard, mlflow_logger,
wandb_logger (named so that none shadows the library it wraps).

Nothing heavy is imported here: a logger imports its library when it is built, so a run that
does not choose MLflow or W&B never imports them.

Besides the metric loggers, :func:`console_log` keeps train.log: the plain text a run printed.
"""

# importing each implementation registers its class in LOGGERS
from dltrain.loggers import csv_file, mlflow_logger, tensorboard, wandb_logger  # noqa: F401
from dltrain.loggers.base import LOGGERS, MetricLogger, build_loggers, flatten
from dltrain.loggers.console_log import LOG_NAME, console_log

__all__ = ["LOGGERS", "LOG_NAME", "MetricLogger", "build_loggers", "console_log", "flatten"]
