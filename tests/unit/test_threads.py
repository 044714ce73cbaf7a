"""Issue 12, threads: ``trainer.threads=auto`` picks one thread for small training steps by a
documented rule and the run records the count; on the CPU in deterministic mode the default
run trains bit-identical weights with 1 and 2 threads, and a resume may change them."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console
from torch import nn

from dltrain import runs
from dltrain.checkpoint import load_checkpoint
from dltrain.device import AUTO_ONE_THREAD_BELOW_FLOPS, DEFAULT_THREADS, set_threads, step_flops
from dltrain.errors import UserError
from dltrain.train.run import run_training

QUIET = Console(file=io.StringIO())


@pytest.fixture(autouse=True)
def one_thread_after():
    yield
    torch.set_num_threads(1)  # as conftest.py sets it for every test


# ---------------------------------------------------------------------------------------------
# the rule
def test_step_flops_counts_the_matrix_products_by_hand():
    batch = 32
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU())
    assert step_flops(linear, (1, 8, 8), batch) == 3 * 2 * (64 * 10) * batch
    # a 3x3 convolution of 1 to 4 channels on 8x8: 36 weights at each of 6x6 output pixels
    conv = nn.Conv2d(1, 4, 3)
    assert step_flops(conv, (1, 8, 8), batch) == 3 * 2 * 36 * 36 * batch
    # an LSTM of 8 inputs and 16 units over 5 steps: 4 gates of (8 + 16) weights per unit
    lstm = nn.LSTM(8, 16, batch_first=True)
    assert step_flops(lstm, (5, 8), batch) == 3 * 2 * (4 * 16 * (8 + 16)) * 5 * batch


def test_step_flops_leaves_the_model_and_the_generators_as_they_were():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    step_flops(model, (4,), 8)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("flops, want, why", [
    (AUTO_ONE_THREAD_BELOW_FLOPS / 10, 1, "auto: 1, a training step is about 50 MFLOP (< 500)"),
    (AUTO_ONE_THREAD_BELOW_FLOPS, DEFAULT_THREADS,
     "auto: one per core, a training step is about 500 MFLOP (>= 500)")])
def test_auto_takes_one_thread_below_the_threshold(flops, want, why):
    torch.set_num_threads(3)
    assert set_threads("auto", lambda: flops) == why
    assert torch.get_num_threads() == want


@pytest.mark.parametrize("setting, want",
                         [(3, 3), (None, DEFAULT_THREADS), ("auto", DEFAULT_THREADS)])
def test_explicit_values_and_null_and_auto_without_an_estimate(setting, want):
    torch.set_num_threads(2 if want != 2 else 1)
    set_threads(setting)  # auto without an estimate: dltrain eval, a CUDA run
    assert torch.get_num_threads() == want


@pytest.mark.parametrize("value", ["auto", None, 1, 4])
def test_the_schema_takes_auto_null_and_counts(make_config, value):
    assert make_config(trainer={"threads": value}).trainer.threads == value


@pytest.mark.parametrize("value", [0, -1, "two", "4", True, 1.5])
def test_the_schema_refuses_anything_else(make_config, value):
    with pytest.raises(UserError, match=r"trainer.threads=.* is not allowed: "
                                        r"null \(one per core\), auto, or a number >= 1"):
        make_config(trainer={"threads": value})


def test_auto_is_the_default_and_the_run_records_its_choice(make_config, tmp_path):
    config = make_config()
    assert config.trainer.threads == "auto"
    run_training(config, tmp_path, QUIET)
    performance = runs.read_record(tmp_path)["performance"]
    assert performance["threads"] == 1  # an MLP [8] on digits: a tiny step
    assert performance["threads_rule"].startswith("auto: 1, a training step is about ")


# ---------------------------------------------------------------------------------------------
# threads and the maths on the CPU (deterministic by default there). Dense and recurrent layers
# train bit-identical weights with 1 and 2 threads: each thread computes whole output elements.
# Two kinds of layer do not, measured with torch 2.14: batch norm's training statistics and a
# convolution's weight gradient are sums split over the threads, so their last bits differ
# (3e-8 in a CNN's weights after an epoch; Adam, which rescales tiny gradients to steps of the
# learning rate, grew batch norm's to 1e-2 in two epochs). A resume that changes
# trainer.threads continues those models as a change of torch.compile does: the same maths,
# rounded differently
MODELS = {
    "default-mlp": {"name": "mlp", "hidden_sizes": [256, 128]},  # dltrain's default run
    "lstm": {"name": "lstm", "hidden_size": 32, "num_layers": 1, "bidirectional": False},
    "gru": {"name": "gru", "hidden_size": 16, "num_layers": 2, "bidirectional": True},
}


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS.keys())
def test_one_and_two_threads_train_bit_identical_weights(make_config, tmp_path, model):
    epochs = 2 if model["name"] == "mlp" else 1  # the default run: 2 of its epochs
    weights, histories = [], []
    for threads in (1, 2):
        config = make_config(model=model, optim={"name": "adam", "lr": 0.001},
                             trainer={"epochs": epochs, "batch_size": 64, "threads": threads})
        run_training(config, tmp_path / str(threads), QUIET)
        assert torch.get_num_threads() == threads
        run = tmp_path / str(threads)
        weights.append(load_checkpoint(run / runs.CHECKPOINTS / runs.LAST)["model"])
        histories.append([row["val_loss"] for row in runs.read_metrics(run / runs.METRICS)])
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert histories[0] == histories[1]


def test_a_resume_may_change_the_threads(make_config, tmp_path):
    from dltrain.rerun import prepare_resume

    run_training(make_config(trainer={"epochs": 1, "threads": 2}), tmp_path, QUIET)
    plan = prepare_resume(str(tmp_path), ["trainer.epochs=2", "trainer.threads=1"],
                          allow_changes=False)
    assert plan.config.trainer.threads == 1
