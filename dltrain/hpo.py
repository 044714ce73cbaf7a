"""The direction of an Optuna search: the way trainer.monitor improves.

Each sweep job returns the best value of trainer.monitor (``launch.train_task``), so the study must
minimize it for ``val_loss``/``val_mae`` and maximize it for ``val_acc``/``val_r2``, the same way
best.pt and early stopping read it. ``configs/hpo/*.yaml`` set
``hydra.sweeper.direction: ${dltrain_direction:${trainer.monitor},${trainer.mode}}`` (the
resolver is registered in ``launch._setup_hydra``), and :class:`DirectionCheck` refuses a sweep whose
direction was set by hand the other way, before any job runs.
No torch here: this runs on the way to Hydra's own flags.
"""

from __future__ import annotations

import sys
from typing import Any, List

from omegaconf import DictConfig, OmegaConf

from dltrain import schema
from dltrain.console import report
from dltrain.errors import UserError

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
