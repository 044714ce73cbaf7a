"""Loss functions by name, and the L1 weight penalty."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from dltrain.registry import Registry
from dltrain.schema import GROUPS, LossConfig, fields_of, resolve_loss

LOSSES: Registry = Registry("loss")
LOSSES.register("cross_entropy")(nn.CrossEntropyLoss)
LOSSES.register("mse")(nn.MSELoss)
LOSSES.register("huber")(nn.HuberLoss)
LOSSES.register("l1")(nn.L1Loss)


def build_loss(cfg: LossConfig, task: str) -> nn.Module:
    """The loss for ``task``: ``cfg.name``, or the task's natural loss when it is ``auto``."""
    name = resolve_loss(cfg.name, task)
    # "auto" means the task's loss with that loss's own defaults
    kwargs = fields_of(cfg if cfg.name == name else GROUPS["loss"][name](name=name))
    return LOSSES.get(name)(**kwargs)


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Σ|w| over ``params`` (the decayed weights: biases and norms are left out, as for L2)."""
    return torch.stack([p.abs().sum() for p in params]).sum()
