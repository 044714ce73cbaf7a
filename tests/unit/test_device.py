"""Device resolution, seeding and random state: all device decisions live in dltrain.device."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from dltrain.device import (Performance, Precision, apply_performance, optimizer_kernels,
                            performance_settings, resolve_device, rng_state, seed_everything,
                            set_rng_state, wants_determinism)
from dltrain.fastpath import FastPath
from dltrain.errors import UserError
from dltrain.optim import build_optimizer

HAS_CUDA = torch.cuda.is_available()


def test_cpu_resolves_to_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("cuda, mps, want", [(True, True, "cuda"), (True, False, "cuda"),
                                             (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(want)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_missing_cuda_is_a_user_error(name):
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_index_beyond_the_devices_is_a_user_error():
    count = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UserError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")


@pytest.mark.parametrize("setting, device, want", [
    (None, "cpu", True), (None, "cuda", False), (True, "cuda", True), (False, "cpu", False)])
def test_wants_determinism(setting, device, want):
    assert wants_determinism(setting, torch.device(device)) is want


def test_rng_state_restores_every_generator():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(11, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        gen = torch.Generator().manual_seed(5)
        state = rng_state(gen)
        draws = (torch.rand(3), torch.randperm(10, generator=gen), random.random())
        torch.rand(7)  # move everything on
        torch.randperm(4, generator=gen)
        random.random()

        set_rng_state(state, gen)
        again = (torch.rand(3), torch.randperm(10, generator=gen), random.random())
        assert torch.equal(draws[0], again[0]) and torch.equal(draws[1], again[1])
        assert draws[2] == again[2]
        # the state is plain data: tensors and lists, loadable with weights_only
        assert isinstance(state["python"], list)
    finally:
        torch.use_deterministic_algorithms(before)


# ---------------------------------------------------------------------------------------------
# the CUDA defaults (issue 9), decided by one function: tested here with the device type given
@pytest.mark.parametrize("device_type", ["cpu", "mps"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_off_cuda_nothing_changes(device_type, deterministic):
    assert performance_settings(device_type, deterministic=deterministic, conv2d=True) == \
        Performance(channels_last=False, cudnn_benchmark=False, tf32=False, fused_optimizer=False)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("conv2d", [False, True])
def test_cuda_defaults(deterministic, conv2d):
    settings = performance_settings("cuda", deterministic=deterministic, conv2d=conv2d)
    assert settings.channels_last is conv2d  # the CNNs on images only
    assert settings.fused_optimizer  # deterministic too: a fused step is as repeatable
    # cuDNN's timed algorithm choice and TF32's rounding: only when not deterministic
    assert settings.cudnn_benchmark is settings.tf32 is (not deterministic)


def test_applying_the_settings_off_cuda_leaves_torch_as_it_is():
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision())
    apply_performance(Performance(True, True, True, True), torch.device("cpu"))
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == before


def test_build_job_on_cpu_keeps_the_plain_path_and_records_it(make_config):
    from dltrain.train.run import build_job

    job = build_job(make_config(model={"name": "cnn", "channels": [4], "hidden_size": 0}))
    assert job.fast.model is job.model and job.fast.compile_mode is None
    assert job.model[0].weight.is_contiguous()  # NCHW: channels_last is for CUDA
    assert job.fast.record(job.optimizer) == {
        "precision": "32", "compile": False, "channels_last": False, "cudnn_benchmark": False,
        "tf32": False, "optimizer": "default"}


def test_channels_last_batches():
    conv = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    fast = FastPath(conv, Precision("32", torch.device("cpu")),
                    Performance(channels_last=True, cudnn_benchmark=False, tf32=False,
                                fused_optimizer=False))
    seen = []
    conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(fast.forward(x), conv(x), atol=1e-6)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[1].is_contiguous(memory_format=torch.channels_last)  # conv(x) as given


@pytest.mark.parametrize("name, want", [("adam", "fused"), ("adamw", "fused"), ("sgd", "fused"),
                                        ("rmsprop", "foreach")])  # RMSprop has no fused kernels
def test_fused_optimizer_where_torch_has_it_else_foreach(make_config, name, want):
    optim = {"name": name, "lr": 0.01} if name != "sgd" else {"name": "sgd", "lr": 0.01}
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(make_config(optim=optim).optim, model, None, fused=True)
    assert optimizer_kernels(optimizer) == want
    plain = build_optimizer(make_config(optim=optim).optim, model, None)
    assert optimizer_kernels(plain) == "default"  # the CPU path: torch's own choice


def test_fused_falls_back_to_foreach_where_the_device_has_no_fused_kernels(make_config):
    model = nn.Linear(3, 2, device="meta")  # torch's own check refuses fused kernels there
    optimizer = build_optimizer(make_config(optim={"name": "adam"}).optim, model, None,
                                fused=True)
    assert optimizer_kernels(optimizer) == "foreach"
