"""Device resolution, seeding and determinism, and how a model runs on its device (precision,
torch.compile, the CUDA defaults): every device decision lives here."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, ContextManager, Dict, Iterator, Optional

import numpy as np
import torch
from torch import nn

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


# ---------------------------------------------------------------------------------------------
# torch.compile (trainer.compile)
def compile_model(model: nn.Module, mode: str, name: str) -> nn.Module:
    """``torch.compile(model)``, compiled on its first call. It shares ``model``'s parameters:
    checkpoints save ``model`` itself, whose state_dict keys carry no ``_orig_mod.`` prefix, so
    eval, resume and replay load them into a model that was never compiled."""
    try:
        return torch.compile(model, mode=mode)
    except RuntimeError as e:  # refused at once: a Python version dynamo does not support
        raise UserError(compile_failure(name, e)) from None


def compile_errors() -> tuple:
    """The exception types of a failed compilation: dynamo's (its BackendCompilerFailed wraps
    inductor's errors, a missing C++ compiler or Triton among them), and inductor's own, which a
    backward graph compiled lazily at its first call can raise unwrapped."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError, InvalidCxxCompiler

    return (TorchDynamoException, InvalidCxxCompiler, CppCompileError)


def compile_failure(name: str, error: BaseException) -> str:
    """One line: which model failed to compile, and torch's own reason."""
    inner = getattr(error, "inner_exception", None) or error  # the backend's error, unwrapped
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    reason = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
    return (f"trainer.compile: torch.compile could not compile model '{name}' ({reason}); "
            "train it without trainer.compile=true")


@contextmanager
def compile_failures_as_user_errors(name: str, enabled: bool) -> Iterator[None]:
    """A compilation fails lazily, at the model's first call (or its backward's, or when a new
    batch shape recompiles it): this turns it into one line wherever it happens."""
    if not enabled:
        yield
        return
    try:
        yield
    except compile_errors() as e:
        raise UserError(compile_failure(name, e)) from None


class CompileClock:
    """Seconds torch.compile spends compiling while the clock is entered, from dynamo's compile
    start and end callbacks: tracing a frame, a backward graph compiled at its first call, CUDA
    graph recording. A step that compiles takes that much longer: the training loop subtracts
    it from the epoch's time, so samples/s measures the steps themselves, and the warm-up is
    reported apart (summary.json's compile_time_s). Only a compiling run enters the clock."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.seconds = 0.0
        self._started = 0.0

    def _start(self, _args: Any) -> None:
        self._started = time.perf_counter()

    def _end(self, _args: Any) -> None:
        self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> "CompileClock":
        if self.enabled:
            from torch._dynamo.callback import callback_handler

            callback_handler.register_start_callback(self._start)
            callback_handler.register_end_callback(self._end)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            from torch._dynamo.callback import callback_handler

            callback_handler.remove_start_callback(self._start)
            callback_handler.remove_end_callback(self._end)


# ---------------------------------------------------------------------------------------------
# all of it together
@dataclass
class FastPath:
    """How a job's model runs on its device: ``model`` is what the steps call (the module, or
    its torch.compile wrapper, which shares its parameters), under ``precision``, with batches
    made channels-last when ``performance`` says so."""

    model: nn.Module
    precision: Precision
    performance: Performance
    compile_mode: Optional[str] = None  # None: not compiled
    clock: CompileClock = dataclasses.field(default_factory=CompileClock)
    cudagraphs: bool = False  # compiled with CUDA graphs (reduce-overhead, max-autotune on CUDA)

    @classmethod
    def plain(cls, model: nn.Module) -> "FastPath":
        """The module as it is, in float32: what ``dltrain eval`` and hand-built jobs run."""
        return cls(model, Precision("32", torch.device("cpu")),
                   performance_settings("cpu", deterministic=True, conv2d=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs for the batch ``x``, under the caller's autocast."""
        if self.performance.channels_last and x.dim() == 4:
            # a batch sliced from a channels-last tensor would not be channels-last anyway
            # (index_select makes a contiguous copy): one conversion per batch, on the device
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.cudagraphs:
            return self.model(x)
        # CUDA graphs replay into the same output memory: each call is announced as a new step,
        # and the outputs, which the metric sums keep for several steps, are copied (a clone
        # that gradients flow through)
        torch.compiler.cudagraph_mark_step_begin()
        return self.model(x).clone()

    def record(self, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
        """The run's performance settings, for run.yaml."""
        settings = self.performance
        return {"precision": self.precision.name, "compile": self.compile_mode or False,
                "channels_last": settings.channels_last,
                "cudnn_benchmark": settings.cudnn_benchmark, "tf32": settings.tf32,
                "optimizer": optimizer_kernels(optimizer)}
