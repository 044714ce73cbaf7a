"""Device resolution, seeding and determinism: every device decision lives here."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from dltrain.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"trainer.device={name} but CUDA is not available on this machine "
                "(use trainer.device=cpu or auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"trainer.device={name} but this machine has {count} CUDA device(s): "
                + ", ".join(f"cuda:{i}" for i in range(count))
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"trainer.device={name} but MPS is not available (use cpu or auto)")
    return device


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every generator dltrain or torch may draw from; optionally force determinism."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too
    if deterministic:
        # cuBLAS needs this to be deterministic; it must be set before the first CUDA matmul
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def wants_determinism(setting: bool | None, device: torch.device) -> bool:
    """``trainer.deterministic: null`` means on for the CPU, off for accelerators."""
    return device.type == "cpu" if setting is None else setting


def rng_state(generator: torch.Generator) -> dict:
    """Every random state a resumed run needs, as plain tensors and lists (safe to load)."""
    state = {
        "shuffle": generator.get_state(),
        "torch": torch.get_rng_state(),
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    generator.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
