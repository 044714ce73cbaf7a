"""Convolutional network: 2-D convolutions over images, 1-D convolutions over time."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from dltrain.data.base import DataInfo
from dltrain.models.mlp import dense_block
from dltrain.models.registry import MODELS

# the feature map is average-pooled down to at most this many positions per axis before the
# dense head, so large inputs do not blow up the head's parameter count. Powers of two, as the
# maps the 2x poolings make from 32x32 or 64x64 images are: those pass unchanged or shrink by a
# whole factor. A cap of 7 turned the 8x8 map of a 32x32 image into 7x7 averages of overlapping
# 2x2 windows, a blur that mixes neighbouring cells and slows learning (issue 7)
MAX_HEAD_POSITIONS = {1: 32, 2: 8}


class ToChannelsFirst(nn.Module):
    """(N, T, F) sequences → (N, F, T) for Conv1d; (N, F) tables → (N, 1, F)."""

    def __init__(self, table: bool) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if self.table else x.transpose(1, 2)


@MODELS.register("cnn")
def build_cnn(
    *,
    info: DataInfo,
    act: Callable[[], nn.Module],
    channels: Sequence[int],
    kernel_size: int = 3,
    hidden_size: int = 128,
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Module:
    if info.kind == "image":
        dims, in_ch, size = 2, info.input_shape[0], list(info.input_shape[1:])
        layers: list[nn.Module] = []
    else:
        table = info.kind == "table"
        dims = 1
        in_ch = 1 if table else info.input_shape[1]
        size = [info.input_shape[0]]
        layers = [ToChannelsFirst(table)]
    conv, norm, pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
    )
    for ch in channels:
        layers.append(conv(in_ch, ch, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(norm(ch))
        layers.append(act())
        if min(size) >= 2:  # pool while there is something to pool
            layers.append(pool(2))
            size = [s // 2 for s in size]
        in_ch = ch
    cap = MAX_HEAD_POSITIONS[dims]
    if max(size) > cap:
        size = [min(s, cap) for s in size]
        layers.append((nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool1d)(tuple(size)))
    layers.append(nn.Flatten())
    width = in_ch * math.prod(size)
    if hidden_size > 0:
        layers += dense_block(width, hidden_size, act, dropout, batch_norm)
        width = hidden_size
    elif dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, info.num_outputs))
    return nn.Sequential(*layers)
