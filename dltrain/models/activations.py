"""Activation functions by name (``activation: gelu``)."""

from __future__ import annotations

from torch import nn

from dltrain.registry import Registry

ACTIVATIONS: Registry = Registry("activation")

for _name, _cls in {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}.items():
    ACTIVATIONS.register(_name)(_cls)
