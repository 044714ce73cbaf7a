"""Recurrent networks (RNN, LSTM, GRU) that read a sequence and predict from its last state.

Images are read row by row (sequential MNIST: H steps of C·W features); tables as a sequence of
their features, one value per step.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dltrain.data.base import DataInfo
from dltrain.models.mlp import dense_block
from dltrain.models.registry import MODELS

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    def __init__(self, rnn: nn.RNNBase, head: nn.Module, kind: str) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "image":  # (N, C, H, W) → (N, H, C·W)
            x = x.permute(0, 2, 1, 3).flatten(2)
        elif self.kind == "table":  # (N, F) → (N, F, 1)
            x = x.unsqueeze(-1)
        _, h = self.rnn(x)
        if isinstance(h, tuple):  # LSTM returns (h_n, c_n)
            h = h[0]
        # h: (layers·directions, N, H); the last layer's directions, side by side
        directions = 2 if self.rnn.bidirectional else 1
        last = h[-directions:].transpose(0, 1).flatten(1)
        return self.head(last)


def input_features(info: DataInfo) -> int:
    if info.kind == "image":
        c, _, w = info.input_shape
        return c * w
    if info.kind == "sequence":
        return info.input_shape[1]
    return 1


def _build(
    cell: str,
    *,
    info: DataInfo,
    act: Callable[[], nn.Module],
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    batch_norm: bool = False,
    **cell_kwargs,
) -> nn.Module:
    rnn = CELLS[cell](
        input_features(info),
        hidden_size,
        num_layers=num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0,  # between stacked layers only
        **cell_kwargs,
    )
    width = hidden_size * (2 if bidirectional else 1)
    head = nn.Sequential(
        *dense_block(width, hidden_size, act, dropout, batch_norm),
        nn.Linear(hidden_size, info.num_outputs),
    )
    return RecurrentNet(rnn, head, info.kind)


@MODELS.register("rnn")
def build_rnn(*, nonlinearity: str = "tanh", **kwargs) -> nn.Module:
    return _build("rnn", nonlinearity=nonlinearity, **kwargs)


@MODELS.register("lstm")
def build_lstm(**kwargs) -> nn.Module:
    return _build("lstm", **kwargs)


@MODELS.register("gru")
def build_gru(**kwargs) -> nn.Module:
    return _build("gru", **kwargs)
