"""Ctrl-C and SIGTERM finish the current step, then stop training cleanly.

A second Ctrl-C while the checkpoint is written is not swallowed: the user stays in charge.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Context manager: while active, a signal sets ``requested`` instead of killing the process."""

    def __init__(self) -> None:
        self.requested = 0
        self._previous: dict = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.requested = signum

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():  # signals go to the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + signum


class AgreedStop:
    """A :class:`StopOnSignal` that every process of a DDP job reads the same. A signal reaches
    the processes at different steps; one that stopped alone would leave the others waiting in
    the next step's gradient exchange. ``dist`` is a :class:`dltrain.distributed.Dist`; a process
    on its own reads its flag as it is."""

    def __init__(self, stop: StopOnSignal, dist) -> None:
        self.stop, self.dist = stop, dist

    @property
    def requested(self) -> int:
        return self.dist.agree_to_stop(self.stop.requested)
