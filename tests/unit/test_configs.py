"""Every shipped YAML composes through Hydra and validates, without training anything."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain import schema
from dltrain.cli import config_dir
from dltrain.errors import UserError
from dltrain.schema import load_config, to_dict

CONFIGS = config_dir()
GROUP_DIRS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
OPTIONS = [(group, p.stem) for group in GROUP_DIRS for p in sorted((CONFIGS / group).glob("*.yaml"))]
REGRESSION_LOSSES = set(schema.LOSSES_FOR_TASK["regression"])


@pytest.fixture(scope="module")
def hydra_compose():
    schema.register_configs()
    OmegaConf.register_new_resolver("dltrain_uid", lambda: "x", replace=True)
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        yield lambda overrides=(): compose("train", overrides=list(overrides))


def required_fields(group: str, option: str) -> list[str]:
    """Fields with no default (data sets of the user's files: path, target column): the command
    line must give them."""
    cls = schema.GROUPS.get(group, {}).get(option)
    if cls is None:
        return []
    node = cls(name=option)
    return [f.name for f in dataclasses.fields(cls) if getattr(node, f.name) == MISSING]


def overrides_for(group: str, option: str) -> list[str]:
    extra = ["data=diabetes"] if group == "loss" and option in REGRESSION_LOSSES else []
    extra += [f"{group}.{name}=placeholder" for name in required_fields(group, option)]
    return [f"{group}={option}", *extra]


def is_global(group: str, option: str) -> bool:
    return "@package _global_" in (CONFIGS / group / f"{option}.yaml").read_text()


def assert_contains(composed, values, where):
    """Every value in the YAML mapping ``values`` arrives unchanged in ``composed``."""
    for key, value in values.items():
        assert key in composed, f"{where}.{key} missing"
        if isinstance(value, dict):
            assert_contains(composed[key], value, f"{where}.{key}")
        else:
            assert composed[key] == value, f"{where}.{key}"


@pytest.mark.parametrize("group", sorted(schema.GROUPS))
def test_every_schema_option_has_its_yaml(group):
    yaml = sorted(o for g, o in OPTIONS if g == group)
    assert yaml == sorted(schema.GROUPS[group])


def test_regularization_and_trainer_ship_yaml():
    assert {"regularization", "trainer"} <= set(GROUP_DIRS)


def test_default_config_composes_and_validates(hydra_compose):
    config = load_config(hydra_compose())
    assert (config.model.name, config.activation.name, config.optim.name, config.data.name) == (
        "mlp", "relu", "adam", "digits")


TOP_LEVEL = {f.name: f.default_factory for f in dataclasses.fields(schema.TrainConfig)
             if f.default_factory is not dataclasses.MISSING}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_yaml_composes_and_validates(hydra_compose, group, option):
    composed = hydra_compose(overrides_for(group, option))
    config = load_config(composed)

    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{option}.yaml"))
    values.pop("defaults", None)
    assert values, f"{group}/{option}.yaml sets nothing"
    if is_global(group, option):  # a preset: sets values of other groups (and of hydra)
        values.pop("hydra", None)
        assert_contains(to_dict(config), values, f"{group}={option}")
        return
    # every value the YAML file sets arrives in the typed config
    if group == "logger":  # several loggers at once: each under its name
        assert values["name"] == option and to_dict(config)["logger"][option] == values
        return
    node = to_dict(config)[group]
    assert_contains(node, values, group)
    # and its node was typed by the schema while composing, so a typo fails before any run
    if group in schema.GROUPS:
        assert values["name"] == node["name"] == option
        assert OmegaConf.get_type(composed[group]) is schema.GROUPS[group][option]
    else:
        assert OmegaConf.get_type(composed[group]) is type(TOP_LEVEL[group]())


def test_wrong_key_or_type_fails_while_composing(hydra_compose):
    for overrides in (["optim.lrr=0.1"], ["optim.lr=abc"], ["trainer.epochs=many"],
                      ["model=mlp", "model.channels=[3]"],  # a cnn key on the mlp
                      ["optim=sgd", "optim.betas=[0.9,0.9]"],  # an adam key on sgd
                      ["regularization.droput=0.1"]):
        with pytest.raises((HydraException, OmegaConfBaseException)):
            hydra_compose(overrides)


@pytest.mark.parametrize("group, option", [(g, o) for g, o in OPTIONS if g in schema.GROUPS],
                         ids=[f"{g}={o}" for g, o in OPTIONS if g in schema.GROUPS])
def test_every_yaml_file_equals_its_dataclass_defaults(hydra_compose, group, option):
    """The dataclass is the one declaration of an option's defaults; its YAML file only shows
    them where users look (issue 8)."""
    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{option}.yaml"))
    values.pop("defaults", None)
    defaults = to_dict(schema.GROUPS[group][option](name=option))
    assert {k: v for k, v in defaults.items() if v != MISSING} == values


def test_several_loggers_compose_and_metrics_csv_is_always_one(hydra_compose):
    for overrides, want in ((["logger=tensorboard"], ["csv", "tensorboard"]),
                            (["logger=[csv,tensorboard]"], ["csv", "tensorboard"]), ([], ["csv"])):
        assert sorted(load_config(hydra_compose(overrides)).logger) == want


def test_an_unknown_logger_is_named(hydra_compose):
    with pytest.raises(UserError, match="unknown logger 'colour'"):
        load_config(hydra_compose(["+logger.colour=red"]))


def test_overrides_reach_the_typed_config(hydra_compose):
    config = load_config(hydra_compose(["model=lstm", "model.hidden_size=16", "optim=sgd",
                                        "optim.lr=0.2", "regularization.dropout=0.25",
                                        "trainer.epochs=3"]))
    assert isinstance(config.model, schema.RecurrentConfig) and config.model.hidden_size == 16
    assert config.optim.lr == 0.2 and config.regularization.dropout == 0.25
    assert config.trainer.epochs == 3


def test_composed_invalid_values_fail_validation(hydra_compose):
    with pytest.raises(UserError, match="optim.lr"):
        load_config(hydra_compose(["optim.lr=-1"]))
    with pytest.raises(UserError, match="cross_entropy"):
        load_config(hydra_compose(["data=diabetes", "loss=cross_entropy"]))


@pytest.mark.parametrize("override", ["+_target_=os.system", "+model._target_=os.system",
                                      "+regularization._target_=os.system",
                                      "+trainer.early_stopping._target_=os.system"])
def test_target_smuggled_in_by_an_override_is_refused(hydra_compose, override):
    """Hydra's `+key=value` adds keys even to structured nodes; load_config must refuse them."""
    cfg = hydra_compose([override])
    with pytest.raises(UserError, match="_target_"):
        load_config(cfg)
