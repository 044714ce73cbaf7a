"""Device resolution, seeding and determinism, precision and the CUDA defaults: every device
decision lives here (dltrain.fastpath puts them together with torch.compile for a job)."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
import torch
from torch import nn

from dltrain.errors import UserError


def resolve_device(name: str, local_rank: int | None = None,
                   option: str = "trainer.device") -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; an explicit device must exist. Messages name
    ``option``, the setting the user gave (``--device`` for the commands that take one).

    ``local_rank``: one process of a DDP job, which takes the CUDA device of its local rank
    (or the CPU)."""
    if local_rank is not None:
        return _process_device(name, local_rank)
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
                f"{option}={name} but CUDA is not available on this machine "
                f"(use {option}=cpu or auto)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"{option}={name} but this machine has {count} CUDA device(s): "
                + ", ".join(f"cuda:{i}" for i in range(count))
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{option}={name} but MPS is not available (use cpu or auto)")
    return device


def _process_device(name: str, local_rank: int) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name.startswith("cuda:") or name == "mps":
        raise UserError(f"trainer.device={name} under DDP: each process takes the GPU of its "
                        "LOCAL_RANK; use trainer.device=cuda (or auto), or cpu")
    if not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but CUDA is not available on this machine "
                        "(use trainer.device=cpu or auto)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(f"process LOCAL_RANK={local_rank} has no GPU: this machine has {count}; "
                        f"start at most {count} processes per node (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


# trainer.threads=auto: one thread for a training step below this many floating-point operations,
# torch's default (one per core) from there on. Measured with scripts/bench_threads.py (README,
# "Threads"): below it a second thread gains little on an idle machine and, on a busy one, costs
# many times the step while the threads wait for each other
AUTO_ONE_THREAD_BELOW_FLOPS = 500e6
# torch's default when dltrain starts (one per core, or OMP_NUM_THREADS): what ``null`` restores
# after an earlier job in the same process (a sweep's) chose fewer
DEFAULT_THREADS = torch.get_num_threads()


def set_threads(threads: int | str | None, step_flops: Callable[[], float] | None = None) -> str:
    """Set torch's CPU threads for ``trainer.threads``: a number, None (torch's default, one per
    core) or ``auto``. Returns why, for run.yaml.

    ``auto`` needs ``step_flops`` (the estimated cost of one training step, see
    :func:`step_flops`): one thread below :data:`AUTO_ONE_THREAD_BELOW_FLOPS`, torch's default
    above; without it (``dltrain eval``) torch's default stays."""
    if threads == "auto":
        if step_flops is None:
            torch.set_num_threads(DEFAULT_THREADS)
            return "auto: torch's default"
        flops = step_flops()
        small = flops < AUTO_ONE_THREAD_BELOW_FLOPS
        torch.set_num_threads(1 if small else DEFAULT_THREADS)
        return (f"auto: {'1' if small else 'one per core'}, a training step is about "
                f"{flops / 1e6:,.0f} MFLOP ({'<' if small else '>='} "
                f"{AUTO_ONE_THREAD_BELOW_FLOPS / 1e6:,.0f})")
    torch.set_num_threads(DEFAULT_THREADS if threads is None else int(threads))
    return "torch's default" if threads is None else str(threads)


def step_flops(model: nn.Module, input_shape: Sequence[int], batch_size: int,
               device: torch.device | str = "cpu") -> float:
    """About how many floating-point operations one training step of ``batch_size`` samples
    takes: three forward passes' worth (the backward pass costs about two), each counted as
    2 x the weights of every linear, convolutional and recurrent layer x the positions it is
    applied at (a convolution's output pixels, a recurrent layer's time steps), read from the
    shapes of one sample's forward pass. Element-wise layers (activations, norms) are left out:
    they are cheap beside the matrix products."""
    flops = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal flops
        out = output[0] if isinstance(output, tuple) else output
        channels = out.shape[1] if isinstance(module, nn.modules.conv._ConvNd) else out.shape[-1]
        weights = sum(p.numel() for name, p in module.named_parameters(recurse=False)
                      if name.startswith("weight"))
        flops += 2 * weights * (out.numel() // channels)

    layers = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    training = model.training
    try:
        model.eval()  # one sample through batch norm; no dropout draws from the generators
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    return 3.0 * flops * batch_size


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
        torch.use_deterministic_algorithms(False)  # cudnn.benchmark: see performance_settings


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


# ---------------------------------------------------------------------------------------------
# precision (trainer.precision)
AUTOCAST_DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def check_precision(name: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run as intended (the schema checked the name)."""
    if name == "16-mixed" and device.type != "cuda":
        # float16 autocast exists on the CPU, but it is slow there and not what 16-mixed is for:
        # Tensor Core float16 with a gradient scaler
        raise UserError(f"trainer.precision=16-mixed needs a CUDA device; on {device.type} "
                        "use trainer.precision=32 or bf16-mixed")
    if name == "bf16-mixed" and device.type == "cuda" and not _native_bf16(device):
        raise UserError(f"trainer.precision=bf16-mixed: {torch.cuda.get_device_name(device)} "
                        "has no bfloat16 support; use trainer.precision=16-mixed or 32")


def _native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes in bfloat16 itself (Ampere and later), not by emulating it."""
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without the argument: it did not count emulation
            return torch.cuda.is_bf16_supported()


class Precision:
    """``trainer.precision`` on a device: the autocast context of the forward pass and the loss
    (``nullcontext()`` for 32), and the gradient scaler.

    Only 16-mixed scales the loss: float16 gradients underflow without it. For 32 and bf16-mixed
    the scaler is disabled, and a disabled GradScaler passes every call through (``scale``
    returns the loss, ``step`` steps the optimizer, ``state_dict`` is empty), so one training
    step serves every precision.
    """

    def __init__(self, name: str, device: torch.device) -> None:
        check_precision(name, device)
        self.name = name
        self.dtype = AUTOCAST_DTYPES[name]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "16-mixed")

    def autocast(self) -> ContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


# ---------------------------------------------------------------------------------------------
# the CUDA defaults
@dataclass(frozen=True)
class Performance:
    """The settings a run turns on by default on CUDA (issue 9); run.yaml records them."""

    channels_last: bool  # the model's weights and its batches in NHWC: Tensor Core convolutions
    cudnn_benchmark: bool  # cuDNN times its algorithms on the first batch of each shape
    tf32: bool  # float32 matmuls and convolutions on TensorFloat-32 Tensor Cores
    fused_optimizer: bool  # the optimizer's fused kernels where it has them, else foreach ones


def performance_settings(device_type: str, *, deterministic: bool, conv2d: bool) -> Performance:
    """On CUDA: channels-last for a model with 2-D convolutions, the fused optimizer and, unless
    the run is deterministic, cuDNN autotuning and TF32. Off CUDA none of them: a CPU run
    computes exactly what it computed before they existed.

    cudnn.benchmark chooses algorithms by timing them, so two runs may choose differently; TF32
    rounds the inputs of float32 matmuls and convolutions to 10 mantissa bits. A deterministic
    run keeps neither.
    """
    cuda = device_type == "cuda"
    fast = cuda and not deterministic
    return Performance(channels_last=cuda and conv2d, cudnn_benchmark=fast, tf32=fast,
                       fused_optimizer=cuda)


def apply_performance(settings: Performance, device: torch.device) -> None:
    """Set torch's global switches for ``settings`` on a CUDA device (elsewhere they do nothing,
    and dltrain leaves them as torch has them).

    TF32 goes through ``set_float32_matmul_precision`` and ``cudnn.allow_tf32``: torch refuses to
    read its TF32 settings back once the legacy switches (``matmul.allow_tf32``) and the new
    ``fp32_precision`` ones have been mixed, and these two read back through both.
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = settings.tf32
    torch.set_float32_matmul_precision("high" if settings.tf32 else "highest")


def optimizer_kernels(optimizer: torch.optim.Optimizer) -> str:
    """Which implementation ``optimizer`` runs: fused, foreach, or torch's default choice."""
    defaults = optimizer.defaults
    return "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") else "default"
