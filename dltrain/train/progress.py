"""Live progress: a rich display on a terminal, one plain line per epoch elsewhere (CI, pipes).

Both fit the console: an epoch's line breaks between metrics, never inside one, and the live bar
drops its least useful parts rather than wrap.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.progress import Progress, ProgressColumn, Task
from rich.progress_bar import ProgressBar
from rich.segment import Segment

from dltrain.console import format_value
from dltrain.train.loop import Callback, Job

DRAW_S = 0.25  # seconds between redraws of the live bar, and so between two loss readouts
READOUTS_PER_EPOCH = 4  # at least this many loss readouts an epoch, when the clock allows
QUIET_S = 1.0  # slow steps: a readout after this long, even before its steps are up
GAP = "  "  # between the metrics of a line


# ---------------------------------------------------------------------------------------------
# one epoch's line
def format_row(row: Dict[str, float]) -> List[str]:
    """An epoch's row as printed: ``train_loss 0.2677``, ``lr 0.001``, ``0.08s``,
    ``14,813 samples/s``, one string per metric."""
    parts = []
    for key, value in row.items():
        if key == "epoch":
            continue
        if key == "epoch_time_s":
            parts.append(f"{value:.2f}s")
        elif key == "samples_per_s":
            parts.append(f"{format_value(value, key)} samples/s")
        else:
            parts.append(f"{key} {format_value(value, key)}")
    return parts


def pack(parts: Iterable[str], width: int, indent: int = 0) -> List[str]:
    """``parts`` joined by two spaces into lines of at most ``width`` characters, breaking
    only between parts; lines after the first start with ``indent`` spaces."""
    lines: List[str] = []
    line = ""
    for part in parts:
        candidate = f"{line}{GAP}{part}" if line.strip() else f"{line}{part}"
        if line.strip() and len(candidate) > width:
            lines.append(line)
            line = " " * indent + part
        else:
            line = candidate
    if line.strip():
        lines.append(line)
    return lines


class EpochLine:
    """``epoch 3/30  train_loss 0.2677  ...  14,813 samples/s *``: one line where the console is
    wide enough or does not wrap (a pipe, train.log); on a narrow terminal, continuation lines
    under the first metric, each metric whole."""

    def __init__(self, head: str, parts: List[str]) -> None:
        self.head, self.parts = head, parts

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.no_wrap:
            lines = [GAP.join([self.head, *self.parts])]
        else:
            lines = pack([self.head, *self.parts], options.max_width,
                         indent=len(self.head) + len(GAP))
        for line in lines:
            yield Segment(line)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(max(map(len, [self.head, *self.parts])),
                           len(GAP.join([self.head, *self.parts])))

    def __str__(self) -> str:
        return GAP.join([self.head, *self.parts])


def epoch_line(row: Dict[str, float], epochs: int, improved: bool) -> EpochLine:
    parts = format_row(row)
    if improved:  # a new best of trainer.monitor (best.pt was written)
        parts[-1] += " *"
    return EpochLine(f"epoch {int(row['epoch'])}/{epochs}", parts)


class PlainProgress(Callback):
    """One line per epoch; never reads the device inside an epoch."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        self.console.print(epoch_line(row, job.config.trainer.epochs, improved))
        if job.state.stop_reason:
            self.console.print(job.state.stop_reason, markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------
# the live bar
def readout_every(n_batches: int, log_every: int) -> int:
    """Steps between two readouts of the running loss (each a host sync): ``trainer.log_every``,
    or fewer so that an epoch shows the loss ``READOUTS_PER_EPOCH`` times, but never every step.
    The clock has the last word: a readout comes with a redraw, at most every ``DRAW_S``."""
    return max(2, min(log_every, n_batches // READOUTS_PER_EPOCH))


def duration(seconds: Optional[float]) -> str:
    """``0:07``, ``12:34``, ``1:02:03``; ``-:--`` while unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--"
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# the live line's parts, in the order they show; dropped from the last of DROP_ORDER while the
# line is wider than the console
SHOW_ORDER = ("epoch", "bar", "batches", "loss", "metric", "speed", "eta")
DROP_ORDER = ("epoch", "bar", "loss", "eta", "metric", "batches", "speed")
BAR_MIN, BAR_MAX = 10, 40


# the room a part takes whatever its value, so the line keeps its layout from draw to draw
RESERVE = {"loss": len("loss 0.0000"), "metric": len("mae 00.0000"),
           "speed": len("000,000 samples/s"), "eta": len("eta 0:00 · run 00:00")}


class LiveLine:
    """The live bar's one line, fitted to the console's width when it is drawn."""

    def __init__(self, fields: Dict[str, str], completed: float, total: float) -> None:
        self.fields, self.completed, self.total = fields, completed, total

    def _room(self, name: str) -> int:
        if name == "batches":
            return len(f"{int(self.total):,}/{int(self.total):,}")
        return max(len(self.fields.get(name, "")), RESERVE.get(name, 0))

    def fit(self, width: int) -> Tuple[List[str], int]:
        """The parts that fit in ``width`` and the bar's width."""
        names = [n for n in DROP_ORDER if n in ("bar", "loss", "metric") or self.fields.get(n)]
        while True:
            text = sum(self._room(n) for n in names if n != "bar")
            room = width - text - len(GAP) * (len(names) - 1)
            if room >= BAR_MIN or len(names) <= 3:
                break
            names.pop()
        shown = [n for n in SHOW_ORDER if n in names]
        return shown, max(BAR_MIN, min(BAR_MAX, room))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown, bar_width = self.fit(options.max_width)
        for i, name in enumerate(shown):
            if i:
                yield Segment(GAP)
            if name == "bar":
                bar = ProgressBar(total=self.total, completed=self.completed, width=bar_width)
                yield from console.render(bar, options.update(width=bar_width))
            elif name == "epoch":
                yield Segment(self.fields[name], console.get_style("bold"))
            else:
                text = self.fields.get(name, "")
                yield Segment(text if name == shown[-1] else text.ljust(self._room(name)))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


class _LiveColumn(ProgressColumn):
    def render(self, task: Task) -> LiveLine:
        return LiveLine(task.fields, task.completed, task.total or 1)


class RichProgress(PlainProgress):
    """A live line per epoch: the bar, the running loss and metric, samples/s and the time left
    (of the epoch and of the run); the epoch's line when it ends.

    The bar is redrawn from the step at most every ``DRAW_S`` seconds, with no refresh thread:
    on a small model a redraw per step, or rich's own 10 Hz thread competing with torch's
    threads for the cores, cost a fifth of the training speed. The running loss is read (a host
    sync) at a redraw, :func:`readout_every` steps after the last read, or after a quiet
    ``QUIET_S``; between readouts, and between epochs, the bar keeps the last value it read.
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(_LiveColumn(), console=console, transient=True,
                                 auto_refresh=False)
        self.task = None
        self.run_start: Optional[float] = None  # this process's first epoch start
        self.last_draw = float("-inf")  # across epochs: short epochs must not redraw each
        self.run_from = 0.0  # epochs done (in fractions) when it started
        self.loss = self.metric = ""

    def on_epoch_start(self, job: Job, n_batches: int) -> None:
        trainer = job.config.trainer
        self.start = self.last_readout = now = time.perf_counter()
        self.first_batch = self.read_batch = job.state.batch  # a resumed epoch starts part-way
        self.n_batches, self.epochs, self.done = n_batches, trainer.epochs, job.state.epoch
        self.batch_size = trainer.batch_size
        self.every = readout_every(n_batches, trainer.log_every)
        if self.run_start is None:
            self.run_start, self.run_from = self.start, self.done + self.first_batch / n_batches
        fields = self._fields(self.first_batch, self.start, speed="…")
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("train", total=n_batches, **fields)  # draws
            self.last_draw = now
        # not Progress.reset, which redraws: the bar keeps no clock of rich's, only its fields
        self.progress.update(self.task, total=n_batches, completed=self.first_batch, **fields)
        if now - self.last_draw >= DRAW_S:  # else the epoch line's print redraws it
            self.last_draw = now
            self.progress.refresh()

    def _fields(self, batch: int, now: float, speed: str) -> Dict[str, str]:
        widest = f"epoch {self.epochs}/{self.epochs}"  # the label keeps its width all run
        return {
            "epoch": f"epoch {self.done + 1}/{self.epochs}".ljust(len(widest)),
            "batches": f"{batch:,}/{self.n_batches:,}",
            "loss": f"loss {self.loss}" if self.loss else "",
            "metric": self.metric,
            "speed": f"{speed} samples/s",
            "eta": self._eta(batch, now),
        }

    def _eta(self, batch: int, now: float) -> str:
        """Time left in this epoch and in the run, at the pace of this process so far
        (validation included once an epoch has ended); an epoch that has not yet stepped
        goes at the pace of the ones before it."""
        epoch_left = run_left = None
        position = self.done + batch / self.n_batches
        if position > self.run_from:
            pace = (now - self.run_start) / (position - self.run_from)  # seconds an epoch
            run_left = pace * (self.epochs - position)
            epoch_left = pace * (self.n_batches - batch) / self.n_batches
        if batch > self.first_batch:
            epoch_left = (now - self.start) / (batch - self.first_batch) * (self.n_batches - batch)
        if self.epochs - self.done <= 1:  # the last epoch: the run ends with it
            return f"eta {duration(epoch_left)}"
        return f"eta {duration(epoch_left)} · run {duration(run_left)}"

    def on_step(self, job: Job, batch: int, running: Callable[[], Dict[str, float]]) -> None:
        now = time.perf_counter()
        if now - self.last_draw < DRAW_S:
            return
        self.last_draw = now
        steps = batch - self.read_batch
        if steps >= self.every or (steps >= 2 and now - self.last_readout >= QUIET_S):
            self._read(running())
            self.last_readout, self.read_batch = now, batch
        speed = (batch - self.first_batch) * self.batch_size / max(now - self.start, 1e-9)
        self.progress.update(self.task, completed=batch,
                             **self._fields(batch, now, format_value(speed, "per_s")))
        self.progress.refresh()

    def _read(self, metrics: Dict[str, float]) -> None:
        """Keep the training loss and metric of ``metrics`` (running sums, or an epoch's row)."""
        self.loss = f"{metrics['train_loss']:.4f}"
        for name in ("acc", "mae"):
            if f"train_{name}" in metrics:
                self.metric = f"{name} {metrics[f'train_{name}']:.4f}"

    def on_epoch_end(self, job: Job, row: Dict[str, float], improved: bool) -> None:
        self._read(row)  # the epoch's own numbers: the next epoch's bar starts from them
        super().on_epoch_end(job, row, improved)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def make_progress(kind: str, console: Console) -> PlainProgress | None:
    """``auto`` is rich on a terminal and plain lines otherwise (a pipe, a file, the prefixed
    console of a parallel sweep job); ``none`` prints nothing per epoch."""
    if kind == "auto":
        kind = "rich" if console.is_terminal and not console.is_dumb_terminal else "plain"
    if kind == "none":
        return None
    return RichProgress(console) if kind == "rich" else PlainProgress(console)
