"""What a run prints besides progress: the model summary and the table of results."""

from __future__ import annotations

from typing import Any, Dict

from rich.table import Table
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_table(model: nn.Module, title: str) -> Table:
    """One row per leaf layer: name, type, output features where known, parameters."""
    table = Table(title=title, title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("shape / settings", overflow="fold")
    table.add_column("params", justify="right")
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False))
        table.add_row(name or "(model)", type(module).__name__, module.extra_repr(), f"{own:,}")
    total = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table.add_section()
    table.add_row("total", "", f"{trainable:,} trainable", f"{total:,}")
    return table


def results_table(summary: Dict[str, Any]) -> Table:
    table = Table(title="results", title_justify="left", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:,.1f}" if key.endswith(("_s", "per_s")) else f"{value:.4f}"
        table.add_row(key, str(value))
    return table
