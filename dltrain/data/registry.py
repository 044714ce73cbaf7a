"""The data-set registry: ``data: NAME`` → a loader returning :class:`DataSplits`."""

from dltrain.registry import Registry

DATASETS = Registry("data set")
