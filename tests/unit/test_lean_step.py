"""The lean-loop property (issue 9): a training step reads nothing back from the device and an
in-memory data set is batched without a DataLoader. Counted, not timed: the number of host reads
in a run does not grow with its number of steps."""

from __future__ import annotations

import collections

import pytest
import torch
import torch.utils.data

from dltrain.train.loop import fit
from dltrain.train.run import build_job

HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def counted(monkeypatch):
    calls = collections.Counter()
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    original_init = torch.utils.data.DataLoader.__init__

    def counting_init(self, *args, **kwargs):
        calls["DataLoader"] += 1
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", counting_init)
    return calls


@pytest.mark.parametrize("task, precision", [("classification", "32"), ("regression", "32"),
                                             ("classification", "bf16-mixed")])
def test_host_reads_do_not_grow_with_the_steps(make_config, counted, task, precision):
    data = {"name": "digits"} if task == "classification" else {"name": "diabetes"}
    reads = {}
    for batch_size in (256, 16):  # 5 and 79 steps an epoch on digits
        # log points (the loss's finiteness check reads the host) beyond the epoch's end
        job = build_job(make_config(data=data, trainer={"epochs": 2, "batch_size": batch_size,
                                                        "precision": precision,
                                                        "log_every": 1000}))
        counted.clear()
        state = fit(job)
        reads[state.step] = dict(counted)
    (few, a), (many, b) = sorted(reads.items())
    assert many > 10 * few // 2
    assert a == b, f"host reads grow with the steps: {few} steps {a}, {many} steps {b}"
    assert not {"item", "__float__", "DataLoader"} & set(b), b


def test_host_reads_grow_with_the_log_points_only(make_config, counted):
    """One read per log point (every trainer.log_every optimizer steps of an epoch, its first
    included): 79 steps at log_every=20 are 4 log points an epoch, against 1 at 1000."""
    reads = {}
    for log_every in (1000, 20):
        job = build_job(make_config(trainer={"epochs": 2, "batch_size": 16, "log_every": log_every,
                                             "diagnostics": False}))
        counted.clear()
        fit(job)
        reads[log_every] = counted["tolist"]
    assert reads[20] - reads[1000] == 2 * (4 - 1)
