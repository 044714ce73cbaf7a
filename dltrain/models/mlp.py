"""Multi-layer perceptron: flattens any input (images, sequences, tables)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

from torch import nn

from dltrain.data.base import DataInfo
from dltrain.models.registry import MODELS


def dense_block(n_in: int, n_out: int, act: Callable[[], nn.Module], dropout: float,
                batch_norm: bool) -> list[nn.Module]:
    """Linear → [BatchNorm1d] → activation → [Dropout]; shared by every model's dense layers."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(act())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


@MODELS.register("mlp")
def build_mlp(
    *,
    info: DataInfo,
    act: Callable[[], nn.Module],
    hidden_sizes: Sequence[int],
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(info.input_shape)
    for h in hidden_sizes:
        layers += dense_block(width, h, act, dropout, batch_norm)
        width = h
    layers.append(nn.Linear(width, info.num_outputs))
    return nn.Sequential(*layers)
