"""Recurrent networks (RNN, LSTM, GRU) that read a sequence and predict from its last state.

Images are read row by row (sequential MNIST: H steps of C·W features); tables as a sequence of
their features, one value per step.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

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
        _, h = self.rnn(_as_sequence(x, self.kind))
        if isinstance(h, tuple):  # LSTM returns (h_n, c_n)
            h = h[0]
        # h: (layers·directions, N, H); the last layer's directions, side by side
        directions = 2 if self.rnn.bidirectional else 1
        last = h[-directions:].transpose(0, 1).flatten(1)
        return self.head(last)

    def unrolled(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """What :meth:`forward` computes, one time step at a time: ``(output, states)``, where
        ``states[t]`` is the last layer's hidden state after step ``t`` (N, H), forward direction.

        ``nn.RNN``/``LSTM``/``GRU`` run the whole sequence in one kernel, so their output holds
        no tensor per step to take a gradient at; here every state is a node of the graph,
        passed on to the next step, and ``torch.autograd.grad(loss, states)`` gives
        d loss / d h_t (the gradient flowing back through time). The cells are written out with
        the module's own weights (PyTorch's gate orders: LSTM i, f, g, o; GRU r, z, n), layer by
        layer and direction by direction, so stacked and bidirectional networks come out as
        :meth:`forward` does: ``states`` are the forward direction's (a backward direction's
        state after step t has read the steps after t, not the ones before it). Slower than
        :meth:`forward`; for diagnostics, not for training.
        """
        rnn = self.rnn
        if getattr(rnn, "proj_size", 0):
            raise ValueError("unrolled() does not handle an LSTM with proj_size > 0")
        seq = _as_sequence(x, self.kind)
        n, steps = seq.shape[0], seq.shape[1]
        directions = 2 if rnn.bidirectional else 1
        step = _CELL_STEPS[rnn.mode]
        states: List[torch.Tensor] = []
        finals: List[torch.Tensor] = []
        for layer in range(rnn.num_layers):
            if layer and rnn.dropout and self.training:  # as nn.RNN: between layers, training only
                seq = F.dropout(seq, rnn.dropout, training=True)
            outputs, finals = [], []
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                weights = [getattr(rnn, f"{w}{suffix}", None)
                           for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                h = seq.new_zeros(n, rnn.hidden_size)
                c = h if rnn.mode == "LSTM" else None
                out: List[Optional[torch.Tensor]] = [None] * steps
                for t in (reversed(range(steps)) if direction else range(steps)):
                    h, c = step(seq[:, t], h, c, *weights)
                    out[t] = h
                    if layer == rnn.num_layers - 1 and direction == 0:
                        states.append(h)
                outputs.append(torch.stack(out, 1))
                finals.append(h)
            seq = torch.cat(outputs, -1) if directions == 2 else outputs[0]
        # the last layer's final states, directions side by side, as forward() reads h_n
        return self.head(torch.cat(finals, -1) if directions == 2 else finals[0]), states


def _as_sequence(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Images and tables as the (N, T, F) sequences that :class:`RecurrentNet` reads."""
    if kind == "image":  # (N, C, H, W) → (N, H, C·W)
        return x.permute(0, 2, 1, 3).flatten(2)
    if kind == "table":  # (N, F) → (N, F, 1)
        return x.unsqueeze(-1)
    return x


def _gates(x, h, w_ih, w_hh, b_ih, b_hh):
    return F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)


def _rnn_step(act):
    def step(x, h, c, *weights):
        gi, gh = _gates(x, h, *weights)
        return act(gi + gh), None
    return step


def _lstm_step(x, h, c, *weights):
    gi, gh = _gates(x, h, *weights)
    i, f, g, o = (gi + gh).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(x, h, c, *weights):
    gi, gh = _gates(x, h, *weights)
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None


# one time step of each nn.RNNBase mode: (x_t, h, c, w_ih, w_hh, b_ih, b_hh) → (h, c)
_CELL_STEPS = {"RNN_TANH": _rnn_step(torch.tanh), "RNN_RELU": _rnn_step(torch.relu),
               "LSTM": _lstm_step, "GRU": _gru_step}


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
