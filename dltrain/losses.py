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


def build_eval_loss(cfg: LossConfig, task: str) -> nn.Module:
    """The loss reported and monitored on val and test: the training loss without label
    smoothing, so that runs trained with different smoothing report comparable losses (as timm
    validates). Smoothing's floor (about 0.5 for 10 classes at 0.1) would otherwise rank runs by
    their smoothing rather than by their fit."""
    loss = build_loss(cfg, task)
    if isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing > 0:
        return nn.CrossEntropyLoss()
    return loss


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Σ|w| over ``params`` (the decayed weights: biases and norms are left out, as for L2)."""
    return torch.stack([p.abs().sum() for p in params]).sum()
