"""Every registered model builds, runs forward and backward: model × data kind × task pairwise,
every activation on each model family; registries, schema tables and YAML files list the same
names."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from unit_support import INPUT_SHAPES, NUM_OUTPUTS, TINY, data_info

from dltrain.cli import config_dir
from dltrain.data import DATASETS
from dltrain.losses import LOSSES
from dltrain.models import ACTIVATIONS, MODELS, build_model
from dltrain.optim import OPTIMIZERS, SCHEDULES
from dltrain.schema import GROUPS

BATCH = 4
KINDS, TASKS = sorted(INPUT_SHAPES), sorted(NUM_OUTPUTS)


def pairwise(*values: list) -> list[tuple]:
    """Rows of the product of ``values`` in which every pair of values of two parameters
    appears at least once: greedily the first row of the product that covers the most pairs
    not yet covered. Deterministic; the product here has a few dozen rows."""
    def pairs(row):
        return set(itertools.combinations(enumerate(row), 2))

    product = list(itertools.product(*values))
    uncovered = set().union(*map(pairs, product))
    rows = []
    while uncovered:
        row = max(product, key=lambda r: len(pairs(r) & uncovered))
        rows.append(row)
        uncovered -= pairs(row)
    return rows


def families() -> dict[str, list[str]]:
    """Registered models by the module of their builder: mlp, cnn, and the recurrent ones."""
    out: dict[str, list[str]] = {}
    for name in MODELS.names():
        out.setdefault(MODELS.get(name).__module__, []).append(name)
    return out


def cases() -> list[tuple[str, str, str, str]]:
    """(model, activation, kind, task): model × kind × task pairwise, the activations taken in
    turn; then every activation once per family, on its models, kinds and tasks in turn."""
    acts = ACTIVATIONS.names()
    rows = [(m, acts[i % len(acts)], k, t)
            for i, (m, k, t) in enumerate(pairwise(MODELS.names(), KINDS, TASKS))]
    for members in families().values():
        for i, act in enumerate(acts):
            row = (members[i % len(members)], act, KINDS[i % len(KINDS)], TASKS[i % len(TASKS)])
            if row not in rows:
                rows.append(row)
    return rows


CASES = cases()


def test_cases_cover_every_pair_and_every_activation_per_family():
    """Holds for whatever the registries list: a new model or activation is covered."""
    seen = {(m, k, t) for m, _, k, t in CASES}
    for (i, a), (j, b) in itertools.combinations(enumerate((MODELS.names(), KINDS, TASKS)), 2):
        for pair in itertools.product(a, b):
            assert any((row[i], row[j]) == pair for row in seen), pair
    for members in families().values():
        used = {act for m, act, _, _ in CASES if m in members}
        assert used == set(ACTIVATIONS.names()), members
    assert len(CASES) < len(MODELS.names()) * len(ACTIVATIONS.names()) * len(KINDS) * len(TASKS)


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


@pytest.mark.parametrize("model_name, activation, kind, task", CASES,
                         ids=["-".join(case) for case in CASES])
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
    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS.get(node["name"]))]
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
