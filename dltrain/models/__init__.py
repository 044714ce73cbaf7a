"""Models by name. ``build_model(config, info)`` turns the config into an ``nn.Module``."""

from __future__ import annotations

import functools

from torch import nn

from dltrain.data.base import DataInfo
from dltrain.models.activations import ACTIVATIONS
from dltrain.models.registry import MODELS
from dltrain.schema import TrainConfig, fields_of

# importing a module registers its models
from dltrain.models import cnn, mlp, rnn  # noqa: E402,F401


def build_model(config: TrainConfig, info: DataInfo) -> nn.Module:
    """The model named by ``config.model``, shaped for ``info`` (inputs, outputs)."""
    act_cls = ACTIVATIONS.get(config.activation.name)
    act = functools.partial(act_cls, **fields_of(config.activation))
    builder = MODELS.get(config.model.name)
    return builder(
        info=info,
        act=act,
        dropout=config.regularization.dropout,
        batch_norm=config.regularization.batch_norm,
        **fields_of(config.model),
    )


__all__ = ["ACTIVATIONS", "MODELS", "build_model"]
