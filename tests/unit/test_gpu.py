"""The CUDA fast path (issue 9): no host sync per step, bf16 and 16-mixed steps, torch.compile,
channels-last CNNs, fused optimizers, cuDNN autotuning and TF32. Skipped without CUDA; run them
with ``pytest -m gpu`` (scripts/gpu_check.sh does, then benchmarks)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console
from unit_support import straight_and_resumed

from dltrain import runs
from dltrain.checkpoint import load_checkpoint, save_checkpoint
from dltrain.device import optimizer_kernels
from dltrain.train.loop import Callback, fit
from dltrain.train.run import build_job, make_checkpoint, restore, run_training

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

MLP = {"name": "mlp", "hidden_sizes": [64]}  # on digits: val_acc 0.95 after 2 epochs (CPU)
CNN = {"name": "cnn", "channels": [8, 16], "hidden_size": 32}
IMAGES = {"name": "synthetic", "shape": [3, 16, 16], "num_samples": 600}


def cuda_config(make_config, trainer=None, **groups):
    groups = {"model": MLP, "optim": {"name": "adam", "lr": 1e-2}, **groups}
    return make_config(trainer={"device": "cuda", "batch_size": 32, **(trainer or {})}, **groups)


class SyncIsAnError(Callback):
    """Makes any host sync an error during the steps of ``epoch`` (1-based), from its start to
    its last step: the epoch's end (the metrics read once) and the evaluation are log points."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.n_batches = self.steps_checked = 0
        self.on = False

    def on_epoch_start(self, job, n_batches):
        self.n_batches = n_batches
        if job.state.epoch + 1 == self.epoch:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            self.on = True

    def on_step(self, job, batch, running):
        if self.on and batch == self.n_batches:
            torch.cuda.set_sync_debug_mode("default")
            self.on = False
            self.steps_checked = batch

    def close(self):
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("model, data, precision", [
    ("mlp", "digits", "32"), ("mlp", "digits", "bf16-mixed"),
    # a fused Adam takes the scaler's overflow flag on the device: no sync for 16-mixed either
    ("mlp", "digits", "16-mixed"), ("cnn", "images", "bf16-mixed"),
])
def test_no_host_sync_in_a_training_epoch(make_config, model, data, precision):
    groups = {"model": CNN, "data": IMAGES} if model == "cnn" else {}
    job = build_job(cuda_config(make_config, {"epochs": 2, "precision": precision}, **groups))
    # the first epoch warms up (cuBLAS handles, cuDNN's algorithm search, the allocator); the
    # second runs every step under sync debug mode "error"
    check = SyncIsAnError(epoch=2)
    try:
        fit(job, [check])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert check.steps_checked == check.n_batches > 10
    assert math.isfinite(job.state.history[-1]["train_loss"])


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_on_cuda(make_config, tmp_path, precision):
    job = build_job(cuda_config(make_config, {"epochs": 3, "precision": precision}))
    fit(job)
    assert all(p.dtype == torch.float32 for p in job.model.parameters())
    assert job.state.history[-1]["val_acc"] > 0.8
    ckpt = make_checkpoint(job)
    if precision == "16-mixed":
        assert ckpt["scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint
        save_checkpoint(tmp_path / "c.pt", ckpt)
        again = build_job(cuda_config(make_config, {"epochs": 3, "precision": precision}))
        restore(again, load_checkpoint(tmp_path / "c.pt"))
        assert again.fast.precision.scaler.get_scale() == job.fast.precision.scaler.get_scale()
    else:
        assert ckpt["scaler"] == {}


def test_16_mixed_resumes_exactly_when_deterministic(make_config, tmp_path):
    """Stopped inside an epoch and resumed from the checkpoint (weights, optimizer, scaler):
    the weights of an uninterrupted run."""
    config = cuda_config(make_config, {"epochs": 2, "precision": "16-mixed",
                                       "deterministic": True})
    straight, resumed = straight_and_resumed(config, lambda steps: steps // 2 + 1, tmp_path)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_on_cuda(make_config, tmp_path, mode):
    """reduce-overhead replays CUDA graphs: the outputs the metric sums keep must survive."""
    import torch._dynamo

    torch._dynamo.reset()
    config = cuda_config(make_config, {"epochs": 2, "compile": True, "compile_mode": mode})
    summary = run_training(config, tmp_path, Console(file=io.StringIO()))
    assert summary["status"] == "completed" and summary["compile_time_s"] > 0
    assert summary["test_acc"] > 0.8
    ckpt = load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.LAST)
    assert not any(key.startswith("_orig_mod.") for key in ckpt["model"])
    plain = build_job(cuda_config(make_config, {"epochs": 2}))
    restore(plain, ckpt)  # loads into a model that was never compiled


def test_cnn_runs_channels_last_with_the_cuda_defaults(make_config, tmp_path):
    config = cuda_config(make_config, {"epochs": 1}, model=CNN, data=IMAGES)
    job = build_job(config)
    conv = job.model[0]
    assert isinstance(conv, torch.nn.Conv2d)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fit(job)
    assert seen and all(x.is_contiguous(memory_format=torch.channels_last) for x in seen)
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
    assert job.fast.record(job.optimizer) == {
        "precision": "32", "compile": False, "channels_last": True, "cudnn_benchmark": True,
        "tf32": True, "optimizer": "fused"}

    run_training(config, tmp_path, Console(file=io.StringIO()))
    assert runs.read_record(tmp_path)["performance"]["channels_last"] is True

    strict = build_job(cuda_config(make_config, {"epochs": 1, "deterministic": True},
                                   model=CNN, data=IMAGES))
    record = strict.fast.record(strict.optimizer)
    assert record["cudnn_benchmark"] is record["tf32"] is False
    assert not torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("optim, want", [("adam", "fused"), ("adamw", "fused"), ("sgd", "fused"),
                                         ("rmsprop", "foreach")])
def test_fused_optimizer_chosen_on_cuda(make_config, optim, want):
    job = build_job(make_config(trainer={"device": "cuda"}, optim={"name": optim, "lr": 0.01}))
    assert optimizer_kernels(job.optimizer) == want
    fit(job)  # the fused step runs
    assert math.isfinite(job.state.history[-1]["train_loss"])
