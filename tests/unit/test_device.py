"""Device resolution, seeding and random state: all device decisions live in dltrain.device."""

from __future__ import annotations

import random

import pytest
import torch

from dltrain.device import (resolve_device, rng_state, seed_everything, set_rng_state,
                            wants_determinism)
from dltrain.errors import UserError

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
