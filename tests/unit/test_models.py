"""Every registered model × activation × data kind × task builds, runs forward and backward;
registries, schema tables and YAML files list the same names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.cli import config_dir
from dltrain.data import DATASETS
from dltrain.losses import LOSSES
from dltrain.models import ACTIVATIONS, MODELS, build_model
from dltrain.optim import OPTIMIZERS, SCHEDULES
from dltrain.schema import GROUPS

from unit_support import INPUT_SHAPES, NUM_OUTPUTS, data_info

# small widths keep the 210 cases fast; a model missing here is built with its schema defaults
TINY = {
    "mlp": {"hidden_sizes": [6, 5]},
    "cnn": {"channels": [3, 4], "hidden_size": 6},
    "rnn": {"hidden_size": 6},
    "lstm": {"hidden_size": 6},
    "gru": {"hidden_size": 6},
}
ACTIVATION_TYPES = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU,
}
BATCH = 4


def model_node(name: str, **extra) -> dict:
    return {"name": name, **TINY.get(name, {}), **extra}


def forward_backward(model: nn.Module, kind: str, task: str) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(BATCH, *INPUT_SHAPES[kind])
    k = NUM_OUTPUTS[task]
    out = model(x)
    if task == "classification":
        loss = nn.functional.cross_entropy(out, torch.randint(0, k, (BATCH,)))
    else:
        loss = nn.functional.mse_loss(out, torch.randn(BATCH, k))
    loss.backward()
    return out


@pytest.mark.parametrize("task", sorted(NUM_OUTPUTS))
@pytest.mark.parametrize("kind", sorted(INPUT_SHAPES))
@pytest.mark.parametrize("activation", ACTIVATIONS.names())
@pytest.mark.parametrize("model_name", MODELS.names())
def test_every_model_builds_runs_and_backpropagates(make_config, model_name, activation, kind, task):
    config = make_config(model=model_node(model_name), activation={"name": activation})
    model = build_model(config, data_info(kind, task))

    out = forward_backward(model, kind, task)

    assert out.shape == (BATCH, NUM_OUTPUTS[task])
    assert torch.isfinite(out).all()
    params = list(model.named_parameters())
    assert params
    for name, p in params:
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert sum(p.grad.abs().sum() for _, p in params) > 0
    # the configured activation is the one the model uses
    assert any(isinstance(m, ACTIVATIONS.get(activation)) for m in model.modules())


def test_activation_names_map_to_torch_modules():
    assert {name: ACTIVATIONS.get(name) for name in ACTIVATIONS.names()} == ACTIVATION_TYPES


@pytest.mark.parametrize("model_name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kind", sorted(INPUT_SHAPES))
def test_stacked_bidirectional_recurrent_models(make_config, model_name, kind):
    config = make_config(model=model_node(model_name, num_layers=2, bidirectional=True))
    model = build_model(config, data_info(kind, "regression"))
    assert model.rnn.num_layers == 2 and model.rnn.bidirectional

    out = forward_backward(model, kind, "regression")

    assert out.shape == (BATCH, NUM_OUTPUTS["regression"])
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_recurrent_model_reads_the_last_state():
    """Changing only the first time step must change the output (the whole sequence is read),
    and the output must come from the final hidden state the cell returns."""
    from dltrain.models.rnn import build_lstm

    torch.manual_seed(0)
    info = data_info("sequence", "regression")
    model = build_lstm(info=info, act=nn.Tanh, hidden_size=5).eval()
    x = torch.randn(3, *INPUT_SHAPES["sequence"])
    _, (h, _) = model.rnn(x)
    assert torch.allclose(model(x), model.head(h[-1]))
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(model(x), model(x2))


def test_rnn_nonlinearity_reaches_the_cell(make_config):
    config = make_config(model=model_node("rnn", nonlinearity="relu"))
    model = build_model(config, data_info("sequence", "classification"))
    assert model.rnn.nonlinearity == "relu"


@pytest.mark.parametrize(
    "node, attr, value",
    [
        ({"name": "leaky_relu", "negative_slope": 0.2}, "negative_slope", 0.2),
        ({"name": "elu", "alpha": 0.5}, "alpha", 0.5),
        ({"name": "gelu", "approximate": "tanh"}, "approximate", "tanh"),
    ],
)
def test_activation_settings_reach_the_module(make_config, node, attr, value):
    model = build_model(make_config(activation=node), data_info("table", "classification"))
    acts = [m for m in model.modules() if isinstance(m, ACTIVATION_TYPES[node["name"]])]
    assert acts and all(getattr(m, attr) == value for m in acts)


def test_cnn_pools_large_inputs_to_a_bounded_head(make_config):
    """A long sequence is average-pooled to at most 32 positions before the dense head."""
    from dltrain.data.base import DataInfo

    info = DataInfo(name="long", kind="sequence", input_shape=(1000, 2), task="regression",
                    num_outputs=1)
    config = make_config(model={"name": "cnn", "channels": [2], "hidden_size": 3})
    model = build_model(config, info)
    first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_linear.in_features == 2 * 32
    assert model(torch.randn(2, 1000, 2)).shape == (2, 1)


def test_unknown_model_name_lists_the_known_ones():
    from dltrain.errors import UserError

    with pytest.raises(UserError) as e:
        MODELS.get("lstmm")
    message = str(e.value)
    assert "lstmm" in message and "did you mean 'lstm'" in message
    for name in MODELS.names():
        assert name in message


# ---------------------------------------------------------------------------------------------
# one name, one registry entry, one schema entry, one YAML file
def yaml_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group, registry, schema_only",
    [
        ("model", MODELS, set()),
        ("activation", ACTIVATIONS, set()),
        ("loss", LOSSES, {"auto"}),
        ("optim", OPTIMIZERS, set()),
        ("sched", SCHEDULES, set()),
        ("data", DATASETS, set()),
    ],
)
def test_registry_schema_and_yaml_carry_the_same_names(group, registry, schema_only):
    registered = sorted(set(registry.names()) | schema_only)
    assert registered == sorted(GROUPS[group])
    assert registered == yaml_options(group)
    assert not schema_only & set(registry.names())


def test_registry_refuses_a_name_twice():
    from dltrain.registry import Registry

    reg = Registry("thing")
    reg.register("a")(int)
    with pytest.raises(ValueError):
        reg.register("a")(float)
    assert reg.get("a") is int and "a" in reg and reg.names() == ["a"]
