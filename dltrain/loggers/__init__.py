"""Metric loggers: where a run's numbers go besides its checkpoints.

Every logger is one class behind :class:`MetricLogger`, registered in :data:`LOGGERS` under the
name its schema option declares (``@option("logger", "csv", "tensorboard")``) and built with that
option's keys as keyword arguments. ``logger=[csv,tensorboard]`` runs several at once; metrics.csv
is always among them. MLflow or W&B would each be one more module here.

Nothing heavy is imported here: a logger imports its library when it is built.

Besides the metric loggers, :func:`console_log` keeps train.log: the plain text a run printed.
"""

from dltrain.loggers.base import LOGGERS, MetricLogger, build_loggers, flatten
from dltrain.loggers.console_log import LOG_NAME, console_log

# importing each implementation registers its class in LOGGERS
from dltrain.loggers import csv_file, tensorboard  # noqa: F401

__all__ = ["LOGGERS", "LOG_NAME", "MetricLogger", "build_loggers", "console_log", "flatten"]
