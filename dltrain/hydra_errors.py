"""What a failed Hydra compose means to a user: one readable message, no library internals.

Facts come from the exceptions' types and attributes: OmegaConf's error (Hydra's cause) carries
the key, the config node's dataclass, its parent node (whose ``name`` is the group's option) and
the node a value failed to convert to; Hydra's missing-option error carries the group and its
options. From them come one line in the user's words (``activation=relu has no key
'negative_slope': it belongs to activation=leaky_relu ...``), never a schema class name. Only the
display of what is left drops lines of Hydra's and OmegaConf's text by their prefixes (search
path, reference types); tests/unit/test_library_messages.py pins those prefixes against the
installed libraries.
"""

from __future__ import annotations

import dataclasses
import typing
from importlib import resources
from pathlib import Path
from typing import Any, List, Optional, Sequence

from omegaconf import BooleanNode, DictConfig, FloatNode, IntegerNode, ListConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from dltrain import schema
from dltrain.registry import did_you_mean, unknown_name

# lines of Hydra's and OmegaConf's messages that describe their internals, not the mistake
NOISE = ("full_key:", "To append to your config", "reference_type=", "object_type=",
         "Config search path", "provider=", "Set the environment variable HYDRA_FULL_ERROR")
# Hydra names the config a defaults-list error happened in; on the command line it is always train
LOCATION = "In 'train': "
# the scalar a value failed to convert to, as the message names it
KINDS = {int: "a whole number (int)", float: "a number (float)", bool: "true or false (bool)"}
_NODE_TYPES = ((IntegerNode, int), (FloatNode, float), (BooleanNode, bool))


def top_level_keys() -> List[str]:
    """What an override may start with: the config's groups and nodes (``model``, ``trainer``)
    and the folders of presets (``experiment``, ``hpo``)."""
    folders = {p.name for p in Path(str(resources.files("dltrain.configs"))).iterdir()
               if p.is_dir() and p.name not in ("hydra", "__pycache__")}
    return sorted(folders | {f.name for f in dataclasses.fields(schema.TrainConfig)})


def unknown_key(error: OmegaConfBaseException, overrides: Sequence[str] = ()) -> Optional[str]:
    """One line for a key that is not in its config node, in the user's words: the group option
    or node it is missing from, a close key, the keys there are, and the other options of the
    group that do have it (``activation.negative_slope`` under ``activation=relu``)."""
    node_type = error.object_type
    if not isinstance(node_type, type) or not dataclasses.is_dataclass(node_type):
        return None
    full_key, key = str(error.full_key or error.key or ""), str(error.key)
    if node_type is schema.TrainConfig:
        return unknown_name("config group or key", key, top_level_keys())
    keys = [f.name for f in dataclasses.fields(node_type)]
    where = full_key.rsplit(".", 1)[0] if "." in full_key else full_key
    group = full_key.split(".")[0]
    options = schema.GROUPS.get(group, {})
    parent = error.parent_node
    chosen = parent.get("name") if isinstance(parent, DictConfig) else None
    if node_type in options.values() and isinstance(chosen, str):
        where = f"{group}={chosen}"
        owners = [name for name, cls in options.items()
                  if key in (f.name for f in dataclasses.fields(cls))]
        if owners and full_key == f"{group}.{key}":
            typed = [o for o in overrides if o.lstrip("+").partition("=")[0] == full_key]
            example = typed[-1].lstrip("+") if typed else f"{full_key}=..."
            return (f"{where} has no key {key!r}: it belongs to "
                    + " or ".join(f"{group}={name}" for name in owners)
                    + f"; choose that too: dltrain {group}={owners[0]} {example}")
    return f"{where} has no key {key!r}{did_you_mean(key, keys)}; its keys: {', '.join(keys)}"


def wrong_shape(error: ValidationError, overrides: Sequence[str]) -> Optional[str]:
    """One line for a single value given where a list or a node of keys belongs, with the
    syntax that works (``model.hidden_sizes=[64]``), or for a null where a value is needed."""
    override = _failed_override(error, overrides)
    if override is None or not isinstance(error.object_type, type):
        return None
    key, _, value = override.partition("=")
    key = key.lstrip("+")
    if key != str(error.full_key) or value.startswith(("[", "{")):
        return None
    if error.value is None:
        return f"{key}={value} is not allowed: {key} needs a value"
    if isinstance(error.child_node, ListConfig) or _is_list(error.object_type, str(error.key)):
        return f"{key}={value} is not allowed: it is a list; write {key}=[{value}]"
    if isinstance(error.child_node, DictConfig):
        keys = list(error.child_node.keys())
        example = f"; set one: {key}.{keys[0]}={value}" if keys else ""
        return f"{key}={value} is not allowed: {key} holds keys ({', '.join(map(str, keys))}){example}"
    return None


def _is_list(node_type: type, key: str) -> bool:
    try:
        hint = typing.get_type_hints(node_type).get(key)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: no hint
        return False
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) in (list, List) or (
        len(args) == 1 and typing.get_origin(args[0]) in (list, List))


def clean_hydra_error(error: Exception, overrides: Sequence[str] = ()) -> str:
    """One line for what Hydra refused, and what is allowed there: the options of a group, the
    keys of the config node a key is not in (and the options that have it), the type or shape a
    value of ``overrides`` must have; else Hydra's message without its internals."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        return unknown_name(group, option, error.options)
    messages, cause = [], error
    while cause is not None:  # Hydra keeps the useful part ("Key 'lrr' not in ...") in the cause
        messages.append(str(cause))
        cause = cause.__cause__
    lines = [ln.rstrip() for m in messages for ln in m.splitlines()]
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(NOISE)]
    omegaconf_error = _omegaconf_error(error)
    if isinstance(omegaconf_error, (ConfigKeyError, ConfigAttributeError)):
        message = unknown_key(omegaconf_error, overrides)
        if message:
            return message
    if isinstance(omegaconf_error, ValidationError):
        message = wrong_shape(omegaconf_error, overrides)
        if message:
            return message
        expected = _expected_type(omegaconf_error)
        override = _failed_override(omegaconf_error, overrides)
        if expected is not None and override is not None:
            key, _, value = override.partition("=")
            return f"{key}={value!r} is not allowed: must be {KINDS[expected]}"
    if lines and lines[0].startswith(LOCATION):
        lines[0] = lines[0][len(LOCATION):]
    return "\n".join(lines)


def _omegaconf_error(error: BaseException) -> Optional[OmegaConfBaseException]:
    """The first OmegaConf error behind ``error``: Hydra raises its own from it (an override),
    or while handling it (a config file that does not merge)."""
    seen: List[BaseException] = []
    while error is not None and error not in seen:
        if isinstance(error, OmegaConfBaseException):
            return error
        seen.append(error)
        error = error.__cause__ or error.__context__
    return None


def _expected_type(error: ValidationError) -> Optional[type]:
    """The scalar type (int, float, bool) a value failed to convert to, if that is the error."""
    if error.value is None:  # a null where none is allowed: not a conversion
        return None
    for node_type, python_type in _NODE_TYPES:
        if isinstance(error.child_node, node_type):
            return python_type
    if isinstance(error.parent_node, ListConfig):  # an element of a list: List[float], ...
        args = [error.ref_type]
        while len(args) == 1 and typing.get_args(args[0]):
            args = [a for a in typing.get_args(args[0]) if a is not type(None)]
        if len(args) == 1 and args[0] in KINDS:
            return args[0]
    return None


def _failed_override(error: ValidationError, overrides: Sequence[str]) -> Optional[str]:
    """The override (as typed) that set the value ``error`` refused: its key is ``full_key`` or
    a node above it, and its value holds the refused one (Hydra stops at the first failure)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - Hydra reported a parse error of its own already
        return None
    full_key = str(error.full_key or "")
    candidates = [o for o in parsed if not o.is_delete() and (
        full_key == o.key_or_group or full_key.startswith((f"{o.key_or_group}.",
                                                           f"{o.key_or_group}[")))]
    for override in candidates:
        if _holds(override.value(), error.value):
            return override.input_line
    return candidates[0].input_line if candidates else None


def _holds(value: Any, wanted: Any) -> bool:
    if value == wanted:
        return True
    if isinstance(value, dict):
        return any(_holds(v, wanted) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, wanted) for v in value)
    return False
