"""An exponential moving average of a model's weights (``trainer.ema_decay``).

After every optimizer step each floating-point tensor of the model's state (weights, and batch
norm's running statistics) moves towards the model's: ``ema += (1 - d) * (w - ema)``, one fused
``lerp`` over all of them on the device. ``d`` ramps up to ``decay`` as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as timm's ModelEmaV2 and TensorFlow's
ExponentialMovingAverage with ``num_updates`` do), so that the average forgets the random
initial weights within a run's first steps instead of after ``1 / (1 - decay)`` of them.
Integer buffers (batch norm's step count) are copied.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
from torch import nn


def ema_factor(decay: float, updates: int) -> float:
    """The decay of update number ``updates + 1``."""
    return min(decay, (1 + updates) / (10 + updates))


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        # the model's own tensors (its parameters and buffers, updated in place by the optimizer
        # and by loading a checkpoint), and their averages
        self.live: Dict[str, torch.Tensor] = dict(model.state_dict(keep_vars=True))
        self.average: Dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in self.live.items()}
        self._float = [k for k, v in self.live.items() if v.is_floating_point()]
        self._other = [k for k in self.live if k not in self._float]

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - ema_factor(self.decay, self.updates)
        self.updates += 1
        torch._foreach_lerp_([self.average[k] for k in self._float],
                             [self.live[k].detach() for k in self._float], weight)
        for k in self._other:
            self.average[k].copy_(self.live[k])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The averaged weights, named as the model's state dict (what best.pt's ``model`` holds)."""
        return {k: v.detach().clone() for k, v in self.average.items()}

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, torch.Tensor], updates: int) -> None:
        for k, v in self.average.items():
            v.copy_(state[k])
        self.updates = updates

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own after it (two copies
        on the device; a compiled or DDP-wrapped model shares these tensors, so it sees them)."""
        with torch.no_grad():
            kept = {k: v.detach().clone() for k, v in self.live.items()}
            for k, v in self.live.items():
                v.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in self.live.items():
                    v.copy_(kept[k])
