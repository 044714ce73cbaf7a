"""Regularization reaches the model and the objective: weight decay on weights only, the L1
penalty in the loss, dropout and batch norm layers in every model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dltrain.models import MODELS, build_model
from dltrain.optim import OPTIMIZERS, Schedule, build_optimizer, split_decay
from dltrain.train.loop import Job, train_step

from unit_support import INPUT_SHAPES, NUM_OUTPUTS, data_info

TINY = {
    "mlp": {"hidden_sizes": [6, 5]},
    "cnn": {"channels": [3], "hidden_size": 5},
    "rnn": {"hidden_size": 5},
    "lstm": {"hidden_size": 5},
    "gru": {"hidden_size": 5},
}
BN = nn.modules.batchnorm._BatchNorm


def build(make_config, model_name, kind="table", task="classification", *, model_extra=None,
          **groups):
    node = {"name": model_name, **TINY.get(model_name, {}), **(model_extra or {})}
    config = make_config(model=node, **groups)
    torch.manual_seed(0)
    return config, build_model(config, data_info(kind, task))


# ---------------------------------------------------------------------------------------------
# weight decay: weights only
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("optim", OPTIMIZERS.names())
@pytest.mark.parametrize("model_name, kind", [("mlp", "table"), ("cnn", "image"),
                                              ("cnn", "sequence"), ("lstm", "sequence"),
                                              ("gru", "image"), ("rnn", "table")])
def test_weight_decay_goes_to_weights_only(make_config, model_name, kind, optim, batch_norm):
    decay = 0.05
    config, model = build(make_config, model_name, kind, optim={"name": optim},
                          regularization={"weight_decay": decay, "batch_norm": batch_norm})
    optimizer = build_optimizer(config.optim, model, config.regularization.weight_decay)

    group_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in group_of, "a parameter sits in two groups"
            group_of[id(p)] = group["weight_decay"]
    assert len(group_of) == len(list(model.parameters()))

    seen_norm = seen_bias = seen_weight = False
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, BN):
                assert group_of[id(p)] == 0.0, f"{type(module).__name__}.{name} is decayed"
                seen_norm = True
            elif p.ndim < 2:
                assert group_of[id(p)] == 0.0, f"bias {type(module).__name__}.{name} is decayed"
                seen_bias = True
            else:
                assert group_of[id(p)] == decay, f"weight {type(module).__name__}.{name} not decayed"
                seen_weight = True
    assert seen_weight and seen_bias and seen_norm == batch_norm


def test_split_decay_leaves_out_frozen_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    decay, no_decay = split_decay(model)
    assert [id(p) for p in decay] == [id(model[0].weight)]
    assert {id(p) for p in no_decay} == {id(model[0].bias), id(model[1].weight),
                                         id(model[1].bias), id(model[2].bias)}


# ---------------------------------------------------------------------------------------------
# the L1 penalty and L2 decay change the step exactly as the maths says
def make_job(config, model) -> Job:
    optimizer = build_optimizer(config.optim, model, config.regularization.weight_decay)
    return Job(
        config=config, model=model, criterion=nn.CrossEntropyLoss(),
        eval_criterion=nn.CrossEntropyLoss(), optimizer=optimizer,
        schedule=Schedule(None, "none", optimizer), data=None, device=torch.device("cpu"),
        generator=torch.Generator(), monitor="val_loss", mode="min",
        l1_params=split_decay(model)[0],
    )


def batch(kind="table", n=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, *INPUT_SHAPES[kind], generator=g)
    y = torch.randint(0, NUM_OUTPUTS["classification"], (n,), generator=g)
    return x, y


def expected_sgd_step(model, x, y, lr, l1, weight_decay):
    """Plain SGD by hand: w - lr·(∂loss/∂w + l1·sign(w) + wd·w) for weights, b - lr·∂loss/∂b else."""
    ref = copy.deepcopy(model)
    loss = nn.functional.cross_entropy(ref(x), y)
    decay_ids = {id(p) for p in split_decay(ref)[0]}
    params = list(ref.parameters())
    grads = torch.autograd.grad(loss, params)
    out = []
    with torch.no_grad():
        for p, g in zip(params, grads):
            if id(p) in decay_ids:
                g = g + l1 * p.sign() + weight_decay * p
            out.append(p - lr * g)
    return loss.detach(), out


@pytest.mark.parametrize("l1, weight_decay", [(0.0, 0.0), (0.05, 0.0), (0.0, 0.1), (0.05, 0.1)])
def test_one_step_matches_hand_computed_l1_and_l2(make_config, l1, weight_decay):
    lr = 0.1
    config, model = build(make_config, "mlp", optim={"name": "sgd", "lr": lr, "momentum": 0.0},
                          regularization={"l1": l1, "weight_decay": weight_decay})
    x, y = batch()
    want_loss, want_params = expected_sgd_step(model, x, y, lr, l1, weight_decay)

    loss, out, _ = train_step(make_job(config, model), x, y)

    # the returned loss is the data loss alone, without the penalty
    assert torch.allclose(loss, want_loss)
    assert out.shape == (len(y), NUM_OUTPUTS["classification"])
    for got, want in zip(model.parameters(), want_params):
        assert torch.allclose(got, want, atol=1e-6)


def test_l1_changes_the_weights_but_not_the_biases(make_config):
    x, y = batch()
    results = {}
    for l1 in (0.0, 0.05):
        config, model = build(make_config, "mlp", regularization={"l1": l1})
        train_step(make_job(config, model), x, y)
        results[l1] = model
    plain, penalized = results[0.0], results[0.05]
    lin_plain = [m for m in plain.modules() if isinstance(m, nn.Linear)]
    lin_pen = [m for m in penalized.modules() if isinstance(m, nn.Linear)]
    for a, b in zip(lin_plain, lin_pen):
        assert not torch.allclose(a.weight, b.weight)
        # biases feel the penalty only through the weights' gradient at this step: none
        assert torch.equal(a.bias, b.bias)


def test_l1_penalty_is_the_sum_of_absolute_values():
    from dltrain.losses import l1_penalty

    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    b = torch.tensor([-3.0])
    assert l1_penalty([a, b]).item() == pytest.approx(1 + 2 + 0.5 + 0 + 3)


# ---------------------------------------------------------------------------------------------
# dropout and batch norm in every model
KINDS = sorted(INPUT_SHAPES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model_name", MODELS.names())
def test_dropout_reaches_every_model(make_config, model_name, kind):
    _, model = build(make_config, model_name, kind, regularization={"dropout": 0.3})
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops, f"{model_name} on {kind} has no dropout"
    assert all(m.p == 0.3 for m in drops)

    # active in training, off in evaluation
    x = torch.randn(8, *INPUT_SHAPES[kind])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        assert not torch.equal(first, model(x))


@pytest.mark.parametrize("model_name", MODELS.names())
def test_no_dropout_layers_without_dropout(make_config, model_name):
    _, model = build(make_config, model_name, "sequence")
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    if isinstance(getattr(model, "rnn", None), nn.RNNBase):
        assert model.rnn.dropout == 0.0


@pytest.mark.parametrize("model_name", ["rnn", "lstm", "gru"])
def test_dropout_between_stacked_recurrent_layers(make_config, model_name):
    _, model = build(make_config, model_name, "sequence", model_extra={"num_layers": 2},
                     regularization={"dropout": 0.3})
    assert model.rnn.dropout == 0.3


@pytest.mark.parametrize(
    "model_name, kind, norm",
    [("mlp", "image", nn.BatchNorm1d), ("mlp", "table", nn.BatchNorm1d),
     ("cnn", "image", nn.BatchNorm2d), ("cnn", "sequence", nn.BatchNorm1d),
     ("cnn", "table", nn.BatchNorm1d), ("rnn", "sequence", nn.BatchNorm1d),
     ("lstm", "image", nn.BatchNorm1d), ("gru", "table", nn.BatchNorm1d)],
)
def test_batch_norm_reaches_models(make_config, model_name, kind, norm):
    _, plain = build(make_config, model_name, kind)
    assert not any(isinstance(m, BN) for m in plain.modules())

    _, model = build(make_config, model_name, kind, regularization={"batch_norm": True})
    norms = [m for m in model.modules() if isinstance(m, BN)]
    assert norms and any(type(m) is norm for m in norms)
    if model_name == "mlp":
        n_hidden = len(TINY["mlp"]["hidden_sizes"])
        assert sum(type(m) is nn.BatchNorm1d for m in norms) == n_hidden
        assert not any(isinstance(m, nn.BatchNorm2d) for m in norms)
    # the layer feeding a norm needs no bias: the norm's shift replaces it
    seq = list(model.modules())
    for i, m in enumerate(seq):
        if isinstance(m, BN):
            feeder = seq[i - 1]
            assert isinstance(feeder, (nn.Linear, nn.Conv1d, nn.Conv2d))
            assert feeder.bias is None
    out = model(torch.randn(4, *INPUT_SHAPES[kind]))
    assert out.shape == (4, NUM_OUTPUTS["classification"])
