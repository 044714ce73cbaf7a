"""Pictures of a run and of a sweep (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, List, Sequence

from dltrain.atomic import atomic_write


def _figure(ncols: int, width: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(1, ncols, figsize=(width * ncols, 3.4), squeeze=False)


def _save(plt, fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_curves(history: List[Dict[str, float]], path: Path, title: str) -> None:
    """curves.png: loss (train and val), the task metrics and the learning rate per epoch."""
    if not history:
        return
    epochs = [row["epoch"] for row in history]
    metrics = [k for k in ("acc", "mae", "r2") if f"val_{k}" in history[0]]
    plt, (fig, axes) = _figure(2 + len(metrics))
    panels = [("loss", axes[0][0])] + [(m, axes[0][i + 1]) for i, m in enumerate(metrics)]
    for name, ax in panels:
        for split in ("train", "val"):
            key = f"{split}_{name}"
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], label=split, marker=".")
        ax.set_title({"acc": "accuracy", "mae": "MAE", "r2": "R²"}.get(name, name))
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        ax.grid(alpha=0.3)
    ax = axes[0][-1]
    ax.plot(epochs, [row["lr"] for row in history], color="tab:green", marker=".")
    ax.set_title("learning rate")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(plt, fig, path)


def _spans_decades(values: Sequence[float], decades: int = 2) -> bool:
    """Positive values over more than ``decades`` orders of magnitude read better on a log axis."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and max(positive) > 10**decades * min(positive)


def plot_sweep(rows: Sequence[Dict[str, object]], params: Sequence[str], metric: str, path: Path) -> None:
    """One panel per swept parameter: the metric of each finished job against its value."""
    done = [r for r in rows if isinstance(r.get(metric), (int, float))]
    if not done or not params:
        return
    plt, (fig, axes) = _figure(len(params))
    for ax, param in zip(axes[0], params):
        values = [r.get(param) for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = values
        else:  # categorical: one position per distinct value, in order of appearance
            labels = list(dict.fromkeys(str(v) for v in values))
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ys = [r[metric] for r in done]
        ax.scatter(xs, ys, alpha=0.8)
        if numeric and _spans_decades(xs):
            ax.set_xscale("log")
        if _spans_decades(ys, 3):
            ax.set_yscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    _save(plt, fig, path)
