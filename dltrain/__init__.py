"""dltrain: a config-driven deep-learning trainer (Hydra YAML in, trained PyTorch model out)."""

__version__ = "0.1.0"
