"""From a plain mapping to the schema's dataclasses, and back; Hydra's ConfigStore.

:func:`load_config` turns any mapping - Hydra's composed config or a YAML file read back from a
run folder - into dataclasses, picking each node's class by its ``name``. That mapping is the only
way a config becomes objects: a ``_target_`` or any key the schema does not know is refused, so
no YAML file can make dltrain call arbitrary code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from dltrain.errors import UserError
from dltrain.registry import unknown_name
from dltrain.schema.base import GROUPS
from dltrain.schema.rules import validate
from dltrain.schema.trainer import (
    EarlyStoppingConfig,
    RegularizationConfig,
    TrainConfig,
    TrainerConfig,
)

# groups a saved config may leave out (older run folders, hand-written YAML), and their default
_OPTIONAL_GROUPS = {"loss": "auto", "sched": "none"}
# the groups with one option each; `logger` holds several, each under its name
_SINGLE = ("model", "activation", "loss", "optim", "sched", "data")


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore (``configs/<group>/<name>.yaml`` extends it)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, options in GROUPS.items():
        for name, cls in options.items():
            cs.store(group=f"schema/{group}", name=name, node=cls(name=name))


def load_config(raw: Mapping[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a plain mapping (or a DictConfig).

    Raises :class:`UserError` naming the key and what is allowed.
    """
    if OmegaConf.is_config(raw):
        try:
            raw = OmegaConf.to_container(raw, resolve=True)
        except OmegaConfBaseException as e:  # an interpolation that does not resolve
            where = f"{e.full_key}: " if e.full_key else ""
            raise UserError(f"{where}{str(e).splitlines()[0]}") from None
    if not isinstance(raw, Mapping):
        raise UserError(f"a config must be a mapping of groups, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "hydra"}
    allowed = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(raw) - set(allowed))
    if len(unknown) == 1:
        raise UserError(unknown_name("config key", unknown[0], allowed))
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    nodes: Dict[str, Any] = {group: _option(group, raw.get(group)) for group in _SINGLE}
    nodes["logger"] = _loggers(raw.get("logger"))
    for key, cls in (("regularization", RegularizationConfig), ("trainer", TrainerConfig)):
        nodes[key] = _typed(key, cls(), raw.get(key) or {})
    config = TrainConfig(**nodes)
    validate(config)
    return config


def _option(group: str, node: Any) -> Any:
    options = GROUPS[group]
    if node is None and group in _OPTIONAL_GROUPS:
        node = {"name": _OPTIONAL_GROUPS[group]}
    if not isinstance(node, Mapping) or "name" not in node:
        raise UserError(f"config group '{group}' is missing; choose one of: {', '.join(options)}")
    name = node["name"]
    if name not in options:
        raise UserError(unknown_name(group, name, options))
    return _typed(group, options[name](name=name), node)


def _loggers(node: Any) -> Dict[str, Any]:
    """``{name: options}`` of every logger; metrics.csv's is always there. A saved config from
    before several loggers could be chosen holds one ``{name: ...}`` node."""
    if node is None:
        node = {}
    if isinstance(node, Mapping) and isinstance(node.get("name"), str):
        node = {node["name"]: dict(node)}
    if not isinstance(node, Mapping):
        raise UserError(f"logger must map logger names to their options, got {node!r}")
    node = {"csv": {"name": "csv"}, **node}
    loggers = {}
    for name, options in node.items():
        if name not in GROUPS["logger"]:
            raise UserError(unknown_name("logger", name, GROUPS["logger"]))
        if not isinstance(options, Mapping):
            raise UserError(f"logger.{name} must hold the logger's options, got {options!r}")
        loggers[name] = _option("logger", {"name": name, **options})
    return loggers


def _typed(key: str, default: Any, values: Mapping[str, Any]) -> Any:
    """Merge ``values`` into the dataclass instance ``default``: unknown keys and wrong types fail."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(default), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        full_key = f"{key}.{e.full_key}" if e.full_key else key
        if isinstance(e, MissingMandatoryValue):
            raise UserError(f"{full_key} is required: add {full_key}=... to the command") from None
        if isinstance(e, ConfigKeyError):
            # the node that lacks the key may be nested (trainer.early_stopping)
            node_type = e.object_type if dataclasses.is_dataclass(e.object_type) else type(default)
            allowed = ", ".join(f.name for f in dataclasses.fields(node_type))
            raise UserError(f"{full_key}: unknown key; allowed here: {allowed}") from None
        raise UserError(f"{full_key}: {str(e).splitlines()[0]}") from None


def to_dict(config: TrainConfig) -> Dict[str, Any]:
    """The plain-dict form saved into checkpoints and run folders."""
    return dataclasses.asdict(config)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists and other values stay whole."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def fields_of(node: Any) -> Dict[str, Any]:
    """A schema node's values without its ``name``: the keyword arguments of its builder."""
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "name"}


def keys_of_class(class_name: str) -> List[str]:
    """The keys of the schema dataclass called ``class_name`` (for error messages)."""
    for cls in (TrainConfig, RegularizationConfig, TrainerConfig, EarlyStoppingConfig,
                *(c for options in GROUPS.values() for c in options.values())):
        if cls.__name__ == class_name:
            return [f.name for f in dataclasses.fields(cls)]
    return []


def resolve_paths(config: TrainConfig) -> Dict[str, str]:
    """Make every path key of ``config`` absolute (relative to the current directory), in
    place; returns the values as they were typed, by dotted key."""
    typed = {}
    for group in dataclasses.fields(config):
        node = getattr(config, group.name)
        if not dataclasses.is_dataclass(node):
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.metadata.get("path") and isinstance(value, str) and value:
                typed[f"{group.name}.{f.name}"] = value
                setattr(node, f.name, os.path.abspath(os.path.expanduser(value)))
    return typed
