"""What a failed Hydra compose means to a user: one readable message, no library internals.

Facts come from the exceptions' types and attributes: OmegaConf's error (Hydra's cause) carries
the key, the config node's dataclass and the node a value failed to convert to. Only the display
drops lines of Hydra's and OmegaConf's text by their prefixes (search path, reference types);
tests/unit/test_library_messages.py pins those prefixes against the installed libraries.
"""

from __future__ import annotations

import typing
from typing import Any, List, Optional, Sequence

from omegaconf import BooleanNode, FloatNode, IntegerNode, ListConfig
from omegaconf.errors import (ConfigAttributeError, ConfigKeyError, OmegaConfBaseException,
                              ValidationError)

from dltrain import schema

# lines of Hydra's and OmegaConf's messages that describe their internals, not the mistake
NOISE = ("full_key:", "To append to your config", "reference_type=", "object_type=",
         "Config search path", "provider=", "Set the environment variable HYDRA_FULL_ERROR")
# Hydra names the config a defaults-list error happened in; on the command line it is always train
LOCATION = "In 'train': "
# the scalar a value failed to convert to, as the message names it
KINDS = {int: "a whole number (int)", float: "a number (float)", bool: "true or false (bool)"}
_NODE_TYPES = ((IntegerNode, int), (FloatNode, float), (BooleanNode, bool))


def clean_hydra_error(error: Exception, overrides: Sequence[str] = ()) -> str:
    """Hydra's message without its internals, and what is allowed where the error says it: the
    keys of the config node a key is not in, the type a value of ``overrides`` must have."""
    messages, cause = [], error
    while cause is not None:  # Hydra keeps the useful part ("Key 'lrr' not in ...") in the cause
        messages.append(str(cause))
        cause = cause.__cause__
    lines = [ln.rstrip() for m in messages for ln in m.splitlines()]
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(NOISE)]
    omegaconf_error = _omegaconf_error(error)
    if (isinstance(omegaconf_error, (ConfigKeyError, ConfigAttributeError))
            and isinstance(omegaconf_error.object_type, type)):
        known = schema.keys_of_class(omegaconf_error.object_type.__name__)
        if known:
            lines.append(f"allowed keys there: {', '.join(known)}")
    if isinstance(omegaconf_error, ValidationError):
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
