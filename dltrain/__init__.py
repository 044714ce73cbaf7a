"""dltrain: a config-driven deep-learning trainer (Hydra YAML in, trained PyTorch model out)."""

from dltrain.version import __version__

__all__ = ["load_run", "__version__"]


def __getattr__(name: str):
    # `import dltrain` stays light: torch is imported when a model is first loaded
    if name == "load_run":
        from dltrain.predict.model import load_run

        return load_run
    raise AttributeError(f"module 'dltrain' has no attribute {name!r}")
