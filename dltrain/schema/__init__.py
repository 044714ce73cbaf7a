"""Typed schema for every config group, and the one place where a config is validated.

Each option of a config group (``model=lstm``, ``optim=sgd``) is a dataclass, declared once with
``@option`` beside its own checks (``check()``):

- :mod:`.model`: ``model`` and ``activation``; :mod:`.optim`: ``loss``, ``optim``, ``sched``;
  :mod:`.data`: ``data``; :mod:`.trainer`: ``regularization``, ``trainer``, ``logger`` and the
  whole :class:`TrainConfig`;
- :mod:`.rules`: the rules that cross groups and :func:`validate`;
- :mod:`.load`: a mapping to dataclasses (:func:`load_config`) and Hydra's ConfigStore.

Hydra gets the dataclasses through the ConfigStore (so a typo or a wrong type in an override fails
while composing). Nothing here imports torch: ``--help`` and config errors answer without it.
"""

from dltrain.schema.base import FIXED_TASKS, GROUPS, PATH, Checker, Options, option
from dltrain.schema.data import (TASKS, AddingDataConfig, CSVDataConfig, DataConfig,
                                 FileDataConfig, ImageFolderDataConfig, NpzDataConfig,
                                 SequenceDataConfig, SineDataConfig, SyntheticDataConfig,
                                 TorchvisionDataConfig)
from dltrain.schema.load import (fields_of, flatten, keys_of_class, load_config, register_configs,
                                 resolve_paths, to_dict)
from dltrain.schema.model import (ActivationConfig, CNNConfig, ELUConfig, GELUConfig,
                                  LeakyReLUConfig, MLPConfig, ModelConfig, RecurrentConfig,
                                  RNNConfig)
from dltrain.schema.optim import (AdamConfig, CosineSchedConfig, CrossEntropyConfig, HuberConfig,
                                  LossConfig, OneCycleSchedConfig, OptimConfig, PlateauSchedConfig,
                                  RMSpropConfig, SchedConfig, SGDConfig, StepSchedConfig)
from dltrain.schema.rules import LOSSES_FOR_TASK, resolve_loss, resolve_monitor, validate
from dltrain.schema.trainer import (DEVICE_PATTERN, MONITORS, EarlyStoppingConfig, LoggerConfig,
                                    RegularizationConfig, TrainConfig, TrainerConfig)

__all__ = [
    "FIXED_TASKS", "GROUPS", "PATH", "Checker", "Options", "option", "TASKS", "AddingDataConfig",
    "CSVDataConfig", "DataConfig", "FileDataConfig", "ImageFolderDataConfig", "NpzDataConfig",
    "SequenceDataConfig", "SineDataConfig", "SyntheticDataConfig", "TorchvisionDataConfig",
    "fields_of", "flatten", "keys_of_class", "load_config", "register_configs", "resolve_paths", "to_dict",
    "ActivationConfig", "CNNConfig", "ELUConfig", "GELUConfig", "LeakyReLUConfig", "MLPConfig",
    "ModelConfig", "RecurrentConfig", "RNNConfig", "AdamConfig", "CosineSchedConfig",
    "CrossEntropyConfig", "HuberConfig", "LossConfig", "OneCycleSchedConfig", "OptimConfig",
    "PlateauSchedConfig", "RMSpropConfig", "SchedConfig", "SGDConfig", "StepSchedConfig",
    "LOSSES_FOR_TASK", "resolve_loss", "resolve_monitor", "validate", "DEVICE_PATTERN",
    "MONITORS", "EarlyStoppingConfig", "LoggerConfig", "RegularizationConfig", "TrainConfig",
    "TrainerConfig",
]
