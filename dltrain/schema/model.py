"""Options of the ``model`` and ``activation`` groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import MISSING

from dltrain.schema.base import Checker, Options, option


@dataclass
class ModelConfig(Options):
    name: str = MISSING


@option("model", "mlp")
@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden_sizes: List[int] = field(default_factory=lambda: [256, 128])

    def check(self, v: Checker) -> None:
        v.check(len(self.hidden_sizes) > 0 and all(h > 0 for h in self.hidden_sizes),
                "hidden_sizes", self.hidden_sizes, "a non-empty list of positive widths")


@option("model", "cnn")
@dataclass
class CNNConfig(ModelConfig):
    name: str = "cnn"
    channels: List[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    # width of the fully connected layer between the conv stack and the output; 0 = none
    hidden_size: int = 128

    def check(self, v: Checker) -> None:
        v.check(len(self.channels) > 0 and all(ch > 0 for ch in self.channels),
                "channels", self.channels, "a non-empty list of positive channel counts")
        v.check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size",
                self.kernel_size, "must be an odd number >= 1 (so that padding keeps the size)")
        v.at_least("hidden_size", self.hidden_size, 0)


@option("model", "lstm", "gru")
@dataclass
class RecurrentConfig(ModelConfig):
    name: str = MISSING
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False

    def check(self, v: Checker) -> None:
        v.positive("hidden_size", self.hidden_size)
        v.at_least("num_layers", self.num_layers, 1)


@option("model", "rnn")
@dataclass
class RNNConfig(RecurrentConfig):
    name: str = "rnn"
    # the cell's own non-linearity (PyTorch's nn.RNN allows only these two); the `activation`
    # group acts in the output head of every recurrent model
    nonlinearity: str = "tanh"

    def check(self, v: Checker) -> None:
        super().check(v)
        v.one_of("nonlinearity", self.nonlinearity, ("tanh", "relu"))


@option("activation", "relu", "sigmoid", "tanh", "silu")
@dataclass
class ActivationConfig(Options):
    name: str = MISSING


@option("activation", "leaky_relu")
@dataclass
class LeakyReLUConfig(ActivationConfig):
    name: str = "leaky_relu"
    negative_slope: float = 0.01

    def check(self, v: Checker) -> None:
        v.at_least("negative_slope", self.negative_slope, 0)


@option("activation", "gelu")
@dataclass
class GELUConfig(ActivationConfig):
    name: str = "gelu"
    approximate: str = "none"

    def check(self, v: Checker) -> None:
        v.one_of("approximate", self.approximate, ("none", "tanh"))


@option("activation", "elu")
@dataclass
class ELUConfig(ActivationConfig):
    name: str = "elu"
    alpha: float = 1.0

    def check(self, v: Checker) -> None:
        v.positive("alpha", self.alpha)
