"""train.log: the plain text of what a run printed, in its run folder.

:func:`console_log` tees a rich console into the file for the length of a ``with`` block. It
hangs on the console as a render hook, so it sees what every ``print`` hands the console (the
model table, the epoch lines, the results) before a live display adds its bar: the bar never
reaches the file. The text is rendered again without colour, as wide as a log reads best, and
written at once, so a crash leaves everything printed until then. Not a metric logger: it takes
what is printed, not the numbers, and is always on.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence

from rich.console import Console, ConsoleRenderable, NewLine, RenderHook
from rich.control import Control

LOG_NAME = "train.log"
WIDTH = 200  # as wide as dltrain prints to a pipe: epoch lines stay whole, tables fit


class ConsoleLog(RenderHook):
    """Writes every renderable printed on the console it hooks to ``path`` (appending: a resume
    continues the log of the run). The file is opened at the first line printed."""

    def __init__(self, path: Path, width: int = WIDTH) -> None:
        self.path = Path(path)
        self.file: Optional[IO[str]] = None
        # renders only; never writes to a terminal, so never colours
        self.renderer = Console(file=io.StringIO(), width=width, color_system=None,
                                force_terminal=False, no_color=True, highlight=False,
                                soft_wrap=True, emoji=False)

    def process_renderables(self, renderables: List[ConsoleRenderable]) -> List[ConsoleRenderable]:
        text = self.plain(renderables)
        if text:
            if self.file is None:
                self.file = open(self.path, "a", encoding="utf-8")
            self.file.write(text)
            self.file.flush()
        return renderables

    def plain(self, renderables: Sequence[ConsoleRenderable]) -> str:
        options = self.renderer.options.update(no_wrap=True, overflow="ignore")
        # a live display moves the cursor (Control) and steps past its bar when it ends (a bare
        # NewLine, erased again on a terminal): neither is text
        text = "".join(segment.text
                       for renderable in renderables
                       if not isinstance(renderable, (Control, NewLine))
                       for segment in self.renderer.render(renderable, options)
                       if not segment.control)
        # rich pads lines to the width of their table or title; a log has no use for the spaces
        lines = text.split("\n")
        return "\n".join([line.rstrip() for line in lines[:-1]] + lines[-1:])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _unhook(console: Console, hook: RenderHook) -> None:
    with console._lock:
        hooks = console._render_hooks
        if hooks and hooks[-1] is hook:
            console.pop_render_hook()
        elif hook in hooks:  # a live display left on top by a crash: take ours from under it
            hooks.remove(hook)


@contextlib.contextmanager
def console_log(run_dir: Path, console: Console, *also: Console) -> Iterator[Optional[ConsoleLog]]:
    """Inside the block, what ``console`` (and each of ``also``, say the error console) prints
    also goes to ``run_dir``/train.log. A quiet console (the other processes of a DDP job)
    records nothing."""
    if console.quiet:
        yield None
        return
    log = ConsoleLog(Path(run_dir) / LOG_NAME)
    consoles = [console, *(c for c in also if c is not console)]
    for c in consoles:
        c.push_render_hook(log)
    try:
        yield log
    finally:
        for c in consoles:
            _unhook(c, log)
        log.close()
