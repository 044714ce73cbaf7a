"""What a run prints besides progress: the model table before training, and after it the
results, the run folder's files and the commands that use them.

:func:`print_start` and :func:`print_end` are the whole of it; with ``trainer.progress=none`` the
first prints nothing and the second one line. Numbers read as everywhere else in dltrain
(:func:`dltrain.console.format_value`).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any, Dict, List, Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from torch import nn

from dltrain.console import format_value, titled
from dltrain.diagnostics import GRADFLOW

CURVES = "curves.png"
BEST = "checkpoints/best.pt"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_table(model: nn.Module, title: str) -> Group:
    """One row per leaf layer: name, type, output features where known, parameters."""
    table = Table()
    table.add_column("layer")
    table.add_column("type")
    table.add_column("shape / settings", overflow="fold")
    table.add_column("params", justify="right")
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False))
        table.add_row(name or "(model)", type(module).__name__, module.extra_repr(),
                      format_value(own, "params"))
    total = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table.add_section()
    table.add_row("total", "", f"{format_value(trainable)} trainable", format_value(total))
    return titled(title, table)


def results_table(summary: Dict[str, Any]) -> RenderableType:
    """Every value of summary.json but the stop reason, which follows the table as a line: a
    sentence in the column would push every number far to the right."""
    table = Table(show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key != "reason":
            table.add_row(key, format_value(value, key))
    parts: List[RenderableType] = [Text("results", style="bold"), table]
    if summary.get("reason"):
        parts.append(Text(str(summary["reason"])))
    return Group(*parts)


def _shown(path: Path) -> str:
    """``path`` as the user would type it here: relative to the working folder when inside it."""
    path = Path(path)
    try:
        path = path.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        pass
    return shlex.quote(str(path))


def files_and_commands(run_dir: Path, summary: Dict[str, Any]) -> List[str]:
    """The end of a run: where its files are, the best checkpoint, and the commands that
    evaluate, predict with and replay it."""
    run_dir = Path(run_dir)
    folder = _shown(run_dir)
    lines = [f"saved in {folder}{os.sep}"]
    best = run_dir / BEST
    has_best = best.is_file()
    if has_best:
        monitor = summary.get("monitor")
        value = summary.get(f"best_{monitor}")
        about = f"epoch {summary.get('best_epoch')}"
        if monitor and value is not None:
            about += f", {monitor} {format_value(value, monitor)}"
        lines.append(f"  {BEST:<21}{about}")
    if (run_dir / CURVES).is_file():
        lines.append(f"  {CURVES:<21}loss and metrics per epoch"
                     + (", best epoch marked" if has_best else ""))
    if (run_dir / GRADFLOW).is_file():
        lines.append(f"  {GRADFLOW:<21}gradient norm per layer and epoch, dead and saturated units")
    others = [name for name in ("metrics.csv", "diagnostics.csv", "summary.json", "train.log",
                                "run.yaml")
              if (run_dir / name).is_file()]
    if others:
        lines.append("  " + "  ".join(others))
    if has_best:
        lines.append(f"evaluate  dltrain eval {folder}")
        lines.append(f"predict   dltrain predict {folder} INPUT")
    lines.append(f"replay    dltrain replay {folder}")
    return lines


def summary_line(run_dir: Path, summary: Dict[str, Any]) -> str:
    """The run in one line, what ``trainer.progress=none`` prints."""
    status = summary.get("status", "?")
    parts = [f"{key} {format_value(value, key)}" for key, value in summary.items()
             if key.startswith("test_") and isinstance(value, (int, float))]
    monitor = summary.get("monitor")
    if monitor and summary.get(f"best_{monitor}") is not None:
        parts.append(f"best_{monitor} {format_value(summary[f'best_{monitor}'], monitor)} "
                     f"(epoch {summary.get('best_epoch')})")
    epochs = summary.get("epochs_completed", 0)
    head = f"{status} after {epochs} epoch{'' if epochs == 1 else 's'}"
    if summary.get("reason") and status == "failed":  # an early stop says so in its status
        head += f" ({summary['reason']})"
    return f"{head}: {'  '.join(parts) or 'no results'}  {_shown(run_dir)}"


def print_start(console: Console, model: nn.Module, title: str, lines: Sequence[str],
                progress: str) -> None:
    """Before training: the model's table under ``title``, then ``lines`` (run folder, device,
    split sizes). Nothing when ``progress`` is ``none``."""
    if progress == "none":
        return
    console.print(model_table(model, title))
    for line in lines:
        console.print(line, markup=False, highlight=False)


def print_end(console: Console, run_dir: Path, summary: Dict[str, Any], progress: str) -> None:
    """After training: the results table, the files and the commands; one line when
    ``progress`` is ``none``."""
    if progress == "none":
        console.print(summary_line(run_dir, summary), markup=False, highlight=False, soft_wrap=True)
        return
    console.print(results_table(summary))
    for line in files_and_commands(run_dir, summary):
        # soft wrap: a long command stays one line, to copy whole
        console.print(line, markup=False, highlight=False, soft_wrap=True)
