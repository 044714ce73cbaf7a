"""The rules that cross groups (a loss against the task, a monitor against the task, a schedule
against the optimizer), and :func:`validate`, which runs every option's own checks, then these."""

from __future__ import annotations

from dltrain.errors import UserError
from dltrain.schema.base import FIXED_TASKS, Checker
from dltrain.schema.optim import CosineSchedConfig
from dltrain.schema.trainer import MONITORS, TrainConfig, TrainerConfig

# the losses each task accepts; "auto" resolves to the first one
LOSSES_FOR_TASK = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "huber", "l1"),
}


def resolve_loss(loss: str, task: str) -> str:
    """The loss a run uses for ``task``; raises if ``loss`` does not fit it."""
    allowed = LOSSES_FOR_TASK[task]
    if loss == "auto":
        return allowed[0]
    if loss not in allowed:
        raise UserError(
            f"loss={loss} does not fit a {task} task; use one of: {', '.join(allowed)} "
            "(or leave `loss` out for the task's default)"
        )
    return loss


def resolve_monitor(trainer: TrainerConfig, task: str) -> tuple[str, str]:
    """(metric, mode) watched for best.pt, early stopping and the plateau schedule."""
    allowed = MONITORS[task]
    monitor = trainer.monitor
    if monitor == "auto":
        # the loss is a smoother guide than accuracy on small validation sets
        monitor = "val_loss"
    if monitor not in allowed:
        raise UserError(
            f"trainer.monitor={monitor} is not a metric of a {task} task; "
            f"use one of: {', '.join(allowed)}"
        )
    mode = allowed[monitor] if trainer.mode == "auto" else trainer.mode
    return monitor, mode


def validate(c: TrainConfig) -> None:
    """Raise one :class:`UserError` listing every invalid value in ``c``."""
    v = Checker()
    v.nested(c)  # each option's own checks
    for name, logger in c.logger.items():
        logger.check(v.scope(f"logger.{name}"))
    if isinstance(c.sched, CosineSchedConfig):
        v.check(0 <= c.sched.eta_min < c.optim.lr, "sched.eta_min", c.sched.eta_min,
                "must be in [0, optim.lr)")
    task = c.data.task if c.data.task != "auto" else FIXED_TASKS.get(c.data.name)
    if task and not v.errors:
        for rule in (lambda: resolve_loss(c.loss.name, task), lambda: resolve_monitor(c.trainer, task)):
            try:
                rule()
            except UserError as e:
                v.fail(str(e))
    if v.errors:
        raise UserError("invalid config:\n  " + "\n  ".join(v.errors))
