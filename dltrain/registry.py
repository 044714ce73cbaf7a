"""Name → constructor tables that list themselves.

A config names a registered entry (``model: lstm``), never a Python import path, so no YAML file
can make dltrain call an arbitrary callable.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from dltrain.errors import UserError

T = TypeVar("T", bound=Callable)


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """`` (did you mean 'lstm'?)`` for the known name closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: object, known: Iterable[str]) -> str:
    """``unknown model 'lstmm' (did you mean 'lstm'?); known: cnn, gru, lstm, mlp, rnn``"""
    known = sorted(known)
    return f"unknown {kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(fn: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = fn
            return fn

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(unknown_name(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
