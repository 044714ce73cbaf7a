"""Optimizers and learning-rate schedules by name; decay / no-decay parameter groups."""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Optional

import torch
from torch import nn

from dltrain.registry import Registry
from dltrain.schema import OptimConfig, PlateauSchedConfig, SchedConfig, fields_of

OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("sgd")(torch.optim.SGD)
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
OPTIMIZERS.register("rmsprop")(torch.optim.RMSprop)

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights that take weight decay and the L1 penalty, biases and norm parameters that don't)."""
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, NORMS) or p.ndim < 2 else decay).append(p)
    return decay, no_decay


def default_weight_decay(name: str) -> float:
    """The optimizer's own torch default: 0.01 for AdamW, 0 for SGD, Adam and RMSprop."""
    return float(inspect.signature(OPTIMIZERS.get(name)).parameters["weight_decay"].default)


def build_optimizer(cfg: OptimConfig, model: nn.Module, weight_decay: Optional[float], *,
                    fused: bool = False) -> torch.optim.Optimizer:
    """``weight_decay`` (None = the optimizer's default) applies to weights only.

    ``fused`` asks for the optimizer's fused kernels (one kernel for all parameters; on CUDA they
    also take 16-mixed's overflow check without a host sync). Where the optimizer has none, or
    not for these parameters' device and dtype, it gets its foreach kernels.
    """
    if weight_decay is None:
        weight_decay = default_weight_decay(cfg.name)
    decay, no_decay = split_decay(model)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    kwargs = fields_of(cfg)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls, groups = OPTIMIZERS.get(cfg.name), [g for g in groups if g["params"]]
    if not fused:
        return cls(groups, **kwargs)
    if has_fused_kernels(cls, [p for g in groups for p in g["params"]]):
        return cls(groups, **kwargs, fused=True)
    return cls(groups, **kwargs, foreach=True)


def has_fused_kernels(cls: type, params: list[nn.Parameter]) -> bool:
    """Whether torch has fused kernels of optimizer ``cls`` for ``params``, asked of torch
    itself: the option in the constructor's signature, then the device and dtype check that
    torch runs at the first step (an error there would come too late to fall back)."""
    if "fused" not in inspect.signature(cls).parameters:
        return False
    try:
        from torch.optim.optimizer import _device_dtype_check_for_fused
    except ImportError:  # an older torch checks in the constructor
        try:
            cls(params, fused=True)
        except RuntimeError:
            return False
        return True
    try:
        for p in params:
            _device_dtype_check_for_fused(p)
    except RuntimeError:  # "`fused=True` requires all the params to be floating point ..."
        return False
    return True


def set_hyperparameters(optimizer: torch.optim.Optimizer, cfg: OptimConfig,
                        weight_decay: Optional[float]) -> None:
    """Put ``cfg``'s settings (all but the lr) and the weight decay into an optimizer whose
    state came from a checkpoint (a resume with --allow-changes)."""
    kwargs = fields_of(cfg)
    kwargs.pop("lr")
    decay = default_weight_decay(cfg.name) if weight_decay is None else weight_decay
    for group in optimizer.param_groups:
        for key, value in kwargs.items():
            group[key] = tuple(value) if key == "betas" else value
        if group.get("name") == "decay":
            group["weight_decay"] = decay


# schedules whose lr is a function of the position alone: changed settings are applied by
# building the schedule anew and stepping it to where the run is
REPLAYABLE = ("step", "cosine", "onecycle")


def retune_schedule(schedule: "Schedule", cfg: SchedConfig, optimizer: torch.optim.Optimizer, *,
                    lr: float, old_lr: float, epochs_done: int, steps_done: int,
                    build: Callable[[], "Schedule"]) -> "Schedule":
    """The schedule of a resumed run whose settings changed (``lr`` is the new optim.lr).

    From the resume on, the lr is what a run started with the new settings would have at this
    point (``build`` makes that schedule on ``optimizer``). A plateau schedule has no such
    position: its lr is rescaled by ``lr / old_lr`` and its new factor, patience and min_lr
    apply to its next reductions.
    """
    if cfg.name in REPLAYABLE:
        for group in optimizer.param_groups:
            group["lr"] = lr
            group.pop("initial_lr", None)  # torch's schedulers keep a base lr they set once
        schedule = build()
        schedule.fast_forward(steps_done, epochs_done)
        return schedule
    schedule.rescale(lr / old_lr)
    if isinstance(cfg, PlateauSchedConfig):
        sched = schedule.scheduler
        sched.factor, sched.patience = cfg.factor, cfg.patience
        sched.min_lrs = [cfg.min_lr] * len(optimizer.param_groups)
    return schedule


class Schedule:
    """A learning-rate schedule and when it steps (after every optimizer step, every epoch, or
    on a metric), times a linear warmup over the first ``warmup_steps`` optimizer steps.

    The warmup multiplies whatever lr the schedule gives. torch's schedulers compute each lr
    from the group's current one, so the schedule's own lr (``base``) is put back into the
    groups before it steps and multiplied by the warmup factor after.
    """

    def __init__(self, scheduler: Optional[Any], interval: str, optimizer: torch.optim.Optimizer,
                 warmup_steps: int = 0, start_factor: float = 0.0) -> None:
        self.scheduler = scheduler
        self.interval = interval  # step | epoch | metric | none
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        self.steps = 0  # optimizer steps taken
        self.base = [group["lr"] for group in optimizer.param_groups]
        self._warm()

    def factor(self, steps: int) -> float:
        """The warmup's factor for the optimizer step after ``steps`` steps: start_factor at
        the first, 1 from step ``warmup_steps`` on."""
        if steps >= self.warmup_steps:
            return 1.0
        return self.start_factor + (1 - self.start_factor) * steps / self.warmup_steps

    def _warm(self) -> None:
        if self.steps <= self.warmup_steps:  # at == the groups get the schedule's lr back
            for group, base in zip(self.optimizer.param_groups, self.base):
                group["lr"] = base * self.factor(self.steps)

    def _step_scheduler(self, *args: float) -> None:
        if self.warmup_steps and self.steps <= self.warmup_steps:
            for group, base in zip(self.optimizer.param_groups, self.base):
                group["lr"] = base
        self.scheduler.step(*args)
        self.base = [group["lr"] for group in self.optimizer.param_groups]

    def after_step(self) -> None:
        self.steps += 1
        if self.interval == "step":
            self._step_scheduler()
        self._warm()

    def after_epoch(self, metric: float) -> None:
        if self.interval == "epoch":
            self._step_scheduler()
        elif self.interval == "metric":
            self._step_scheduler(metric)
        else:
            return
        self._warm()

    def fast_forward(self, steps: int, epochs: int) -> None:
        """Put a new schedule where a run is after ``steps`` optimizer steps and ``epochs``
        epochs (a resume that changed the schedule's settings)."""
        position = steps if self.interval == "step" else epochs
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": by design
            warnings.simplefilter("ignore")
            for _ in range(position if self.scheduler is not None else 0):
                self._step_scheduler()
        self.steps = steps
        self._warm()

    def rescale(self, ratio: float) -> None:
        """Multiply the lr by ``ratio`` from here on (a schedule without a position)."""
        self.base = [base * ratio for base in self.base]
        for group in self.optimizer.param_groups:
            group["lr"] *= ratio

    def state_dict(self) -> dict:
        state = dict(self.scheduler.state_dict()) if self.scheduler is not None else {}
        state[WARMUP_KEY] = {"steps": self.steps, "base": list(self.base),
                             "interval": self.interval}
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        own = state.pop(WARMUP_KEY, None)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        if own is None:  # a checkpoint from before the warmup: no warmup, and its cosine
            # annealed once per epoch (its saved T_max counts epochs)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                self.interval = "epoch"
            self.base = [group["lr"] for group in self.optimizer.param_groups]
            return
        self.steps, self.base, self.interval = own["steps"], list(own["base"]), own["interval"]


WARMUP_KEY = "dltrain_schedule"  # a Schedule's own state, beside its torch scheduler's


SCHEDULES: Registry = Registry("schedule")


# each builder returns (torch's scheduler or None, when it steps)
@SCHEDULES.register("none")
def _none(optimizer, **_) -> tuple:
    return None, "none"


@SCHEDULES.register("step")
def _step(optimizer, *, step_size: int, gamma: float, **_) -> tuple:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma), "epoch"


@SCHEDULES.register("cosine")
def _cosine(optimizer, *, epochs: int, steps_per_epoch: int, eta_min: float, **_) -> tuple:
    # annealed every optimizer step: an epoch-wise staircase would hold each lr for a whole
    # epoch, and make a short run's last epoch train at eta_min
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs * steps_per_epoch, 1), eta_min=eta_min)
    return sched, "step"


@SCHEDULES.register("plateau")
def _plateau(optimizer, *, mode: str, factor: float, patience: int, min_lr: float, **_) -> tuple:
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr
    )
    return sched, "metric"


@SCHEDULES.register("onecycle")
def _onecycle(optimizer, *, epochs: int, steps_per_epoch: int, base_lr: float,
              max_lr: Optional[float], pct_start: float, cycle_momentum: bool, **_) -> tuple:
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=max_lr or base_lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        pct_start=pct_start,
        cycle_momentum=cycle_momentum,
    )
    return sched, "step"


def build_schedule(cfg: SchedConfig, optimizer: torch.optim.Optimizer, *, epochs: int,
                   steps_per_epoch: int, base_lr: float, mode: str) -> Schedule:
    """``steps_per_epoch`` counts optimizer steps (batches / trainer.accumulate)."""
    options = fields_of(cfg)
    warmup = options.pop("warmup_steps") or options.pop("warmup_epochs") * steps_per_epoch
    options.pop("warmup_epochs", None)
    start_factor = options.pop("warmup_start_factor")
    scheduler, interval = SCHEDULES.get(cfg.name)(
        optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, base_lr=base_lr, mode=mode,
        **options,
    )
    return Schedule(scheduler, interval, optimizer, warmup, start_factor)
