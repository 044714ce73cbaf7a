"""The model registry: ``model: NAME`` → a builder returning an ``nn.Module``."""

from dltrain.registry import Registry

MODELS = Registry("model")
