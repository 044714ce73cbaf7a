"""Options of the ``loss``, ``optim`` and ``sched`` groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from dltrain.schema.base import Checker, Options, option


@option("loss", "auto", "mse", "l1")
@dataclass
class LossConfig(Options):
    # "auto" picks the task's natural loss: cross-entropy for classification, MSE for regression
    name: str = "auto"


@option("loss", "cross_entropy")
@dataclass
class CrossEntropyConfig(LossConfig):
    name: str = "cross_entropy"
    # 0 = plain cross-entropy, the loss other tools report. When > 0, training uses it, but
    # val/test losses (and so the monitor) stay plain cross-entropy, comparable across runs
    label_smoothing: float = 0.0

    def check(self, v: Checker) -> None:
        v.fraction("label_smoothing", self.label_smoothing)


@option("loss", "huber")
@dataclass
class HuberConfig(LossConfig):
    name: str = "huber"
    delta: float = 1.0

    def check(self, v: Checker) -> None:
        v.positive("delta", self.delta)


# weight decay is not here: it belongs to `regularization`
@dataclass
class OptimConfig(Options):
    name: str = MISSING
    lr: float = 1e-3

    def check(self, v: Checker) -> None:
        v.positive("lr", self.lr)


@option("optim", "sgd")
@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False

    def check(self, v: Checker) -> None:
        super().check(v)
        v.fraction("momentum", self.momentum)
        v.check(not self.nesterov or self.momentum > 0, "nesterov", self.nesterov,
                "nesterov needs optim.momentum > 0")


@option("optim", "adam", "adamw")
@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, v: Checker) -> None:
        super().check(v)
        v.check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                self.betas, "two numbers in [0, 1)")
        v.positive("eps", self.eps)


@option("optim", "rmsprop")
@dataclass
class RMSpropConfig(OptimConfig):
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0

    def check(self, v: Checker) -> None:
        super().check(v)
        v.fraction("alpha", self.alpha)
        v.fraction("momentum", self.momentum)
        v.positive("eps", self.eps)


@option("sched", "none")
@dataclass
class SchedConfig(Options):
    name: str = "none"
    # a linear warmup over the first optimizer steps, from warmup_start_factor x the lr the
    # schedule gives to that lr; it multiplies any schedule. Set steps or epochs (of optimizer
    # steps), not both; 0 = no warmup
    warmup_steps: int = 0
    warmup_epochs: int = 0
    warmup_start_factor: float = 0.0

    def check(self, v: Checker) -> None:
        v.at_least("warmup_steps", self.warmup_steps, 0)
        v.at_least("warmup_epochs", self.warmup_epochs, 0)
        v.fraction("warmup_start_factor", self.warmup_start_factor, closed_high=True)
        v.check(not (self.warmup_steps and self.warmup_epochs), "warmup_epochs",
                self.warmup_epochs, "set sched.warmup_steps or sched.warmup_epochs, not both")


@option("sched", "step")
@dataclass
class StepSchedConfig(SchedConfig):
    name: str = "step"
    step_size: int = 10  # epochs
    gamma: float = 0.1

    def check(self, v: Checker) -> None:
        super().check(v)
        v.at_least("step_size", self.step_size, 1)
        v.check(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")


@option("sched", "cosine")
@dataclass
class CosineSchedConfig(SchedConfig):
    name: str = "cosine"
    # the cosine runs from optim.lr to eta_min over the run's optimizer steps, annealed every
    # step (checked against optim.lr in rules.py: a rule across groups)
    eta_min: float = 0.0


@option("sched", "plateau")
@dataclass
class PlateauSchedConfig(SchedConfig):
    name: str = "plateau"  # watches trainer.monitor
    factor: float = 0.1
    patience: int = 5
    min_lr: float = 0.0

    def check(self, v: Checker) -> None:
        super().check(v)
        v.check(0 < self.factor < 1, "factor", self.factor, "must be in (0, 1)")
        v.at_least("patience", self.patience, 0)
        v.at_least("min_lr", self.min_lr, 0)


@option("sched", "onecycle")
@dataclass
class OneCycleSchedConfig(SchedConfig):
    name: str = "onecycle"  # stepped every batch; peaks at max_lr (null = optim.lr)
    max_lr: Optional[float] = None
    pct_start: float = 0.3
    # torch cycles momentum (or Adam's beta1) between 0.85 and 0.95 by default; here only when
    # asked, so optim.momentum / optim.betas mean what they say
    cycle_momentum: bool = False

    def check(self, v: Checker) -> None:
        super().check(v)
        if self.max_lr is not None:
            v.positive("max_lr", self.max_lr)
        v.check(0 < self.pct_start < 1, "pct_start", self.pct_start, "must be in (0, 1)")
