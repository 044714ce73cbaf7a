"""load_config: plain mappings become typed dataclasses; every mistake is a UserError naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from dltrain import schema
from dltrain.errors import UserError
from dltrain.schema import GROUPS, load_config, to_dict

from unit_support import raw


def error_of(config: dict) -> str:
    with pytest.raises(UserError) as e:
        load_config(config)
    return str(e.value)


# ---------------------------------------------------------------------------------------------
# what loads
def test_plain_dict_becomes_typed_dataclasses():
    config = load_config(raw(model={"name": "cnn", "channels": [4]}, optim={"name": "adam"},
                             sched={"name": "cosine"}, loss={"name": "cross_entropy"}))
    assert type(config.model) is schema.CNNConfig and config.model.channels == [4]
    assert config.model.kernel_size == schema.CNNConfig().kernel_size  # defaults fill the rest
    assert type(config.optim) is schema.AdamConfig
    assert type(config.sched) is schema.CosineSchedConfig
    assert type(config.loss) is schema.CrossEntropyConfig
    assert type(config.trainer.early_stopping) is schema.EarlyStoppingConfig
    assert config.trainer.epochs == 1 and config.trainer.device == "cpu"


def test_loss_and_sched_may_be_left_out_and_hydra_is_ignored():
    config = raw()
    config.pop("regularization")
    config.pop("trainer")
    config["hydra"] = {"run": {"dir": "somewhere"}}
    loaded = load_config(config)
    assert loaded.loss.name == "auto" and loaded.sched.name == "none"
    assert loaded.regularization == schema.RegularizationConfig()
    assert loaded.trainer == schema.TrainerConfig()


def test_dictconfig_and_dict_load_the_same():
    assert load_config(OmegaConf.create(raw())) == load_config(raw())


def test_strings_convert_to_the_field_type():
    config = load_config(raw(optim={"name": "sgd", "lr": "0.5"}, trainer={"epochs": "3"}))
    assert config.optim.lr == 0.5 and config.trainer.epochs == 3


@pytest.mark.parametrize("group", ["model", "optim", "sched", "loss", "activation"])
def test_saved_dict_loads_back_identical(group):
    """A run folder stores to_dict(config); reading it back gives the same config (replay)."""
    options = {"model": {"name": "gru", "hidden_size": 7, "bidirectional": True},
               "optim": {"name": "rmsprop", "alpha": 0.8},
               "sched": {"name": "onecycle", "max_lr": 0.3},
               "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
               "activation": {"name": "leaky_relu", "negative_slope": 0.3}}
    config = load_config(raw(**{group: options[group]}, regularization={"l1": 1e-4}))
    assert load_config(to_dict(config)) == config


# ---------------------------------------------------------------------------------------------
# what fails, and how the message says it
@pytest.mark.parametrize(
    "groups, key",
    [
        ({"optim": {"name": "sgd", "lr": -1}}, "optim.lr"),
        ({"optim": {"name": "adam", "lr": 0}}, "optim.lr"),
        ({"regularization": {"dropout": 1.5}}, "regularization.dropout"),
        ({"regularization": {"weight_decay": -0.1}}, "regularization.weight_decay"),
        ({"regularization": {"l1": -1}}, "regularization.l1"),
        ({"trainer": {"epochs": 0}}, "trainer.epochs"),
        ({"trainer": {"batch_size": 0}}, "trainer.batch_size"),
        ({"trainer": {"device": "gpu"}}, "trainer.device"),
        ({"trainer": {"grad_clip": 0}}, "trainer.grad_clip"),
        ({"trainer": {"monitor": "val_mae"}}, "trainer.monitor"),  # not a digits metric
        ({"trainer": {"early_stopping": {"patience": 0}}}, "trainer.early_stopping.patience"),
        ({"model": {"name": "cnn", "kernel_size": 4}}, "model.kernel_size"),
        ({"model": {"name": "mlp", "hidden_sizes": []}}, "model.hidden_sizes"),
        ({"model": {"name": "rnn", "nonlinearity": "gelu"}}, "model.nonlinearity"),
        ({"optim": {"name": "sgd", "momentum": 0.0, "nesterov": True}}, "optim.nesterov"),
        ({"optim": {"name": "adam", "betas": [0.9]}}, "optim.betas"),
        ({"sched": {"name": "cosine", "eta_min": 1.0}}, "sched.eta_min"),
        ({"sched": {"name": "step", "gamma": 0}}, "sched.gamma"),
        ({"loss": {"name": "cross_entropy", "label_smoothing": 1.0}}, "loss.label_smoothing"),
        ({"data": {"name": "digits", "task": "regression"}}, "data.task"),
        ({"data": {"name": "digits", "val_fraction": 0.5, "test_fraction": 0.5}},
         "data.val_fraction + data.test_fraction"),
        ({"data": {"name": "diabetes"}, "loss": {"name": "cross_entropy"}}, "loss=cross_entropy"),
        ({"optim": {"name": "sgd", "lr": "abc"}}, "optim.lr"),
        ({"trainer": {"batch_size": "many"}}, "trainer.batch_size"),
        ({"regularization": {"batch_norm": "sometimes"}}, "regularization.batch_norm"),
    ],
)
def test_invalid_value_names_the_key(groups, key):
    message = error_of(raw(**groups))
    assert key in message


def test_every_invalid_value_is_listed_at_once():
    message = error_of(raw(trainer={"epochs": 0, "batch_size": 0}, optim={"name": "sgd", "lr": -1}))
    for key in ("trainer.epochs", "trainer.batch_size", "optim.lr"):
        assert key in message


def test_diabetes_with_cross_entropy_names_the_loss_and_the_choices():
    message = error_of(raw(data={"name": "diabetes"}, loss={"name": "cross_entropy"}))
    assert "loss" in message and "cross_entropy" in message and "regression" in message
    for allowed in ("mse", "huber", "l1"):
        assert allowed in message


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_unknown_option_lists_the_known_ones(group):
    message = error_of(raw(**{group: {"name": "nosuchthing"}}))
    assert group in message and "nosuchthing" in message
    for name in GROUPS[group]:
        assert name in message


def test_unknown_model_suggests_the_close_name():
    message = error_of(raw(model={"name": "lstmm"}))
    assert "did you mean 'lstm'" in message
    assert "cnn, gru, lstm, mlp, rnn" in message


@pytest.mark.parametrize("group", ["model", "activation", "optim", "data"])
def test_missing_group_is_named(group):
    config = raw()
    config.pop(group)
    message = error_of(config)
    assert group in message and "missing" in message


@pytest.mark.parametrize(
    "groups, key",
    [
        ({"colour": "blue"}, "colour"),
        ({"trainer": {"epochz": 3}}, "trainer.epochz"),
        ({"model": {"name": "mlp", "depth": 3}}, "model.depth"),
        ({"optim": {"name": "sgd", "betas": [0.9, 0.99]}}, "optim.betas"),  # an Adam key on SGD
        ({"regularization": {"droput": 0.1}}, "regularization.droput"),
        ({"trainer": {"early_stopping": {"patients": 3}}}, "trainer.early_stopping.patients"),
    ],
)
def test_unknown_key_is_named(groups, key):
    message = error_of(raw(**groups))
    assert key in message and "unknown" in message


@pytest.mark.parametrize(
    "groups, allowed",
    [
        ({"trainer": {"epochz": 3}}, schema.TrainerConfig),
        ({"model": {"name": "cnn", "layers": 3}}, schema.CNNConfig),
        ({"trainer": {"early_stopping": {"patients": 3}}}, schema.EarlyStoppingConfig),
    ],
)
def test_unknown_key_lists_the_keys_allowed_at_that_place(groups, allowed):
    import dataclasses

    message = error_of(raw(**groups))
    for f in dataclasses.fields(allowed):
        assert f.name in message, f"{f.name} missing from: {message}"


# ---------------------------------------------------------------------------------------------
# no YAML can make dltrain call arbitrary code
def target_node(marker):
    # what hydra.utils.instantiate would turn into open(marker, "w"): creates the file
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"]}


@pytest.mark.parametrize("where", ["top", "model", "activation", "optim", "loss", "sched", "data",
                                   "regularization", "trainer", "early_stopping"])
def test_target_key_builds_nothing_and_is_refused(tmp_path, where):
    marker = tmp_path / "MARKER"
    config = raw(loss={"name": "auto"}, sched={"name": "none"})
    if where == "top":
        config.update(target_node(marker))
    elif where == "early_stopping":
        config["trainer"]["early_stopping"] = target_node(marker)
    else:
        config[where].update(target_node(marker))

    message = error_of(config)

    assert "_target_" in message
    assert not marker.exists()


def test_target_in_place_of_a_group_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    message = error_of(raw(model=target_node(marker)))
    assert "model" in message
    assert not marker.exists()


def test_schema_does_not_import_torch():
    """Config errors answer without importing torch (it takes seconds)."""
    code = (
        "import sys\n"
        "from dltrain.schema import load_config\n"
        "from dltrain.errors import UserError\n"
        "try:\n"
        "    load_config({'model': {'name': 'mlpp'}})\n"
        "except UserError:\n"
        "    pass\n"
        "load_config({'model': {'name': 'mlp'}, 'activation': {'name': 'relu'},\n"
        "             'optim': {'name': 'adam'}, 'data': {'name': 'digits'}})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_interpolation_that_does_not_resolve_is_a_user_error(raw_config):
    from omegaconf import OmegaConf

    from dltrain.errors import UserError
    from dltrain.schema import load_config

    cfg = OmegaConf.create(raw_config(trainer={"epochs": "${oops}"}))
    with pytest.raises(UserError, match="trainer.epochs: Interpolation key 'oops' not found"):
        load_config(cfg)
