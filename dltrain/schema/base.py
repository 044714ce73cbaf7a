"""What every option dataclass shares: its declaration in a group, and its own checks.

An option is declared once, where its dataclass is defined: ``@option("model", "lstm", "gru")``
puts the class into :data:`GROUPS` under those names (and a data set's fixed task into
:data:`FIXED_TASKS`). The YAML files, the ConfigStore and the error messages all read these
tables, and tests check the builders' registries against them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, TypeVar

# field metadata of a key that names a file or folder: a run resolves it to an absolute path
# when it starts, so that its folder can be evaluated, replayed and resumed from anywhere
PATH = {"path": True}

# group -> option name -> its dataclass, in declaration order (the groups in the order --help
# lists them)
GROUPS: Dict[str, Dict[str, type]] = {
    group: {} for group in ("model", "activation", "loss", "optim", "sched", "data", "logger")}
# the task of the data sets whose task does not depend on the user's files
FIXED_TASKS: Dict[str, str] = {}

T = TypeVar("T", bound=type)


def option(group: str, *names: str, task: Optional[str] = None) -> Callable[[T], T]:
    """Declare ``names`` as options of ``group`` built from the decorated dataclass."""

    def register(cls: T) -> T:
        options = GROUPS[group]
        for name in names:
            if name in options:
                raise ValueError(f"{group} option {name!r} is declared twice")
            options[name] = cls
            if task is not None:
                FIXED_TASKS[name] = task
        return cls

    return register


class Checker:
    """Collects every invalid value of a config, each as one line naming the key."""

    def __init__(self, prefix: str = "", errors: Optional[List[str]] = None) -> None:
        self.prefix = prefix
        self.errors: List[str] = [] if errors is None else errors

    def scope(self, name: str) -> "Checker":
        """A checker for a nested node: its keys are reported as ``prefix.name.key``."""
        return Checker(self.key(name), self.errors)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def check(self, ok: bool, name: str, value: Any, allowed: str) -> None:
        if not ok:
            self.errors.append(f"{self.key(name)}={value!r} is not allowed: {allowed}")

    def positive(self, name: str, value: float) -> None:
        self.check(value > 0, name, value, "must be > 0")

    def at_least(self, name: str, value: Optional[float], low: float) -> None:
        """``value >= low``; ``None`` (an unset optional value) passes."""
        if value is not None:
            self.check(value >= low, name, value, f"must be >= {low}")

    def fraction(self, name: str, value: float, *, closed_high: bool = False) -> None:
        ok = 0 <= value <= 1 if closed_high else 0 <= value < 1
        self.check(ok, name, value, f"must be in [0, 1{']' if closed_high else ')'}")

    def one_of(self, name: str, value: Any, options: Any) -> None:
        self.check(value in options, name, value, f"must be one of {', '.join(map(str, options))}")

    def nested(self, node: Any) -> None:
        """Run the checks of every dataclass field of ``node`` that has its own."""
        for f in dataclasses.fields(node):
            child = getattr(node, f.name)
            if hasattr(child, "check") and dataclasses.is_dataclass(child):
                child.check(self.scope(f.name))


class Options:
    """Base of every option dataclass: ``check`` adds the errors of its own values."""

    def check(self, v: Checker) -> None:
        v.nested(self)
