"""How a job's model runs on its device: torch.compile (trainer.compile) and the job's
:class:`FastPath`, which puts the compiled or plain module together with the precision and the
CUDA defaults that :mod:`dltrain.device` decides."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from dltrain.device import (
    Performance,
    Precision,
    optimizer_kernels,
    performance_settings,
)
from dltrain.errors import UserError


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
    # DistributedDataParallel around ``model`` (one process of several): what training steps
    # call, to average the gradients. Evaluation calls ``model``: DDP's forward would broadcast
    # buffers, a collective that processes evaluating different numbers of batches cannot share
    ddp: Optional[nn.Module] = None

    @classmethod
    def plain(cls, model: nn.Module) -> "FastPath":
        """The module as it is, in float32: what ``dltrain eval`` and hand-built jobs run."""
        return cls(model, Precision("32", torch.device("cpu")),
                   performance_settings("cpu", deterministic=True, conv2d=False))

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """The model's outputs for the batch ``x``, under the caller's autocast (``train``: in
        a training step, through DDP when there is one)."""
        model = self.ddp if train and self.ddp is not None else self.model
        if self.performance.channels_last and x.dim() == 4:
            # a batch sliced from a channels-last tensor would not be channels-last anyway
            # (index_select makes a contiguous copy): one conversion per batch, on the device
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.cudagraphs:
            return model(x)
        # CUDA graphs replay into the same output memory: each call is announced as a new step,
        # and the outputs, which the metric sums keep for several steps, are copied (a clone
        # that gradients flow through)
        torch.compiler.cudagraph_mark_step_begin()
        return model(x).clone()

    def record(self, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
        """The run's performance settings, for run.yaml."""
        settings = self.performance
        return {"precision": self.precision.name, "compile": self.compile_mode or False,
                "channels_last": settings.channels_last,
                "cudnn_benchmark": settings.cudnn_benchmark, "tf32": settings.tf32,
                "optimizer": optimizer_kernels(optimizer)}
