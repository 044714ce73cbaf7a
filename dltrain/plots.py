"""Pictures of a run and of a sweep (matplotlib, Agg backend: no display needed).

:func:`curves_figure` and :func:`sweep_figure` build the figures (tests read their axes);
:func:`plot_curves` and :func:`plot_sweep` write them as PNG files.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from dltrain.atomic import atomic_write

BEST_GID = "best_epoch"  # the artists that mark the best epoch (tests find them by it)
DEFAULT_LABEL = "default"  # a swept value left unset (null) and with no known default


def _pyplot():
    # matplotlib says at INFO that it built its font cache, the first time on a machine; what
    # dltrain's handler would pass on (a library's INFO) is not news for the user
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(ncols: int, width: float = 4.2):
    plt = _pyplot()
    return plt.subplots(1, ncols, figsize=(width * ncols, 3.4), squeeze=False)


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


# ---------------------------------------------------------------------------------------------
# curves.png
def curves_figure(history: List[Dict[str, float]], title: str, best_epoch: Optional[int] = None,
                  monitor: Optional[str] = None):
    """Loss (train and val) and the task metrics per epoch, and the learning rate when it
    changed. ``best_epoch`` (best.pt's epoch) is marked in every panel by a dashed line, and on
    the ``monitor`` curve by a star."""
    epochs = [row["epoch"] for row in history]
    metrics = [k for k in ("acc", "mae", "r2") if f"val_{k}" in history[0]]
    lrs = [row["lr"] for row in history if "lr" in row]
    show_lr = len(set(lrs)) > 1  # a constant lr says nothing a panel should show
    fig, axes = _figure(1 + len(metrics) + show_lr)
    panels = [("loss", axes[0][0])] + [(m, axes[0][i + 1]) for i, m in enumerate(metrics)]
    for name, ax in panels:
        for split in ("train", "val"):
            key = f"{split}_{name}"
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], label=split, marker=".")
        ax.set_title({"acc": "accuracy", "mae": "MAE", "r2": "R²"}.get(name, name))
    if show_lr:
        ax = axes[0][-1]
        ax.plot(epochs, [row["lr"] for row in history], color="tab:green", marker=".")
        ax.set_title("learning rate")
    if best_epoch and best_epoch in epochs:
        row = history[epochs.index(best_epoch)]
        for i, ax in enumerate(axes[0]):
            line = ax.axvline(best_epoch, color="0.45", linestyle="--", linewidth=1,
                              label=f"best (epoch {best_epoch})" if i < len(panels) else None)
            line.set_gid(BEST_GID)
        split, _, name = (monitor or "").partition("_")
        target = dict(panels).get(name)
        if target is not None and monitor in row:
            (star,) = target.plot([best_epoch], [row[monitor]], marker="*", markersize=13,
                                  color="tab:red", linestyle="none", zorder=3)
            star.set_gid(BEST_GID)
    for i, ax in enumerate(axes[0]):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if i < len(panels):
            ax.legend()
    marked = best_epoch and best_epoch in epochs
    fig.suptitle(title + (f", best epoch {best_epoch}" if marked else ""))
    return fig


def plot_curves(history: List[Dict[str, float]], path: Path, title: str, *,
                best_epoch: Optional[int] = None, monitor: Optional[str] = None) -> None:
    """curves.png (see :func:`curves_figure`); nothing before the first epoch."""
    if history:
        _save(curves_figure(history, title, best_epoch, monitor), path)


# ---------------------------------------------------------------------------------------------
# sweep.png
def _spans_decades(values: Sequence[float], decades: float = 1) -> bool:
    """Positive values over ``decades`` orders of magnitude or more read better on a log axis."""
    positive = [v for v in values if v > 0]
    return (bool(positive) and len(positive) == len(values)
            and max(positive) >= 10**decades * min(positive))


def tick_label(value: float) -> str:
    """``0.0005``, ``0.001``, ``2e-5``, ``100``: short, and never run together."""
    text = f"{value:g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def log_axis(axis, values: Sequence[float]) -> None:
    """A log scale on ``axis`` (``ax.xaxis`` or ``ax.yaxis``) with labels at 1, 2 and 5 times
    each power of ten (powers of ten only over three decades or more) and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax = axis.axes
    (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades >= 3 else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(NullFormatter())
    if axis is ax.xaxis:
        axis.set_tick_params(rotation=30)


def linear_axis(axis) -> None:
    """At most six short labels (``0.0008``, ``0.001``), slanted: long decimals side by side
    ran together."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=5))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    axis.set_tick_params(rotation=30)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sweep_figure(rows: Sequence[Dict[str, object]], params: Sequence[str], metric: str,
                 defaults: Optional[Mapping[str, Any]] = None):
    """One panel per swept parameter: the metric of each finished job against its value.

    A job that left a parameter unset (``None``) is drawn at ``defaults[param]``, the value it
    ran with, or at the label ``default`` when that is not known. Numbers spanning a decade or
    more get a log axis, other numbers a linear one; other values are categories, in order of
    appearance."""
    defaults = defaults or {}
    done = [r for r in rows if _is_number(r.get(metric))]
    if not done or not params:
        return None
    fig, axes = _figure(len(params))
    for ax, param in zip(axes[0], params):
        values = [r.get(param) if r.get(param) is not None else defaults.get(param) for r in done]
        numeric = all(_is_number(v) for v in values)
        if numeric:
            xs = values
        else:  # categorical: one position per distinct value, in order of appearance
            names = [DEFAULT_LABEL if v is None else str(v) for v in values]
            labels = list(dict.fromkeys(names))
            xs = [labels.index(n) for n in names]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ys = [r[metric] for r in done]
        ax.scatter(xs, ys, alpha=0.8)
        if numeric and _spans_decades(xs):
            log_axis(ax.xaxis, xs)
        elif numeric:
            linear_axis(ax.xaxis)
        if _spans_decades(ys, 3):
            log_axis(ax.yaxis, ys)
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    return fig


def plot_sweep(rows: Sequence[Dict[str, object]], params: Sequence[str], metric: str, path: Path,
               *, defaults: Optional[Mapping[str, Any]] = None) -> None:
    """sweep.png (see :func:`sweep_figure`); nothing when no job finished."""
    fig = sweep_figure(rows, params, metric, defaults)
    if fig is not None:
        _save(fig, path)


# ---------------------------------------------------------------------------------------------
# compare.png (dltrain compare) and a sweep's curves.png: several runs' curves
COMPARE_TITLES = {"train_loss": "train loss", "val_loss": "val loss", "val_acc": "val accuracy",
                  "val_mae": "val MAE", "val_r2": "val R²", "lr": "learning rate"}


def run_colors(n: int) -> List[str]:
    """``n`` colours, one per run, as ``#rrggbb`` (a table prints each run's label in its
    colour): tab10, tab20 up to 20 runs, then evenly spread over turbo."""
    _pyplot()
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 20:
        cmap = colormaps["tab10" if n <= 10 else "tab20"]
        return [to_hex(cmap(i)) for i in range(n)]
    cmap = colormaps["turbo"]
    return [to_hex(cmap(0.05 + 0.9 * i / (n - 1))) for i in range(n)]


def _finite(value: Optional[float]) -> float:
    # inf (a diverged loss) would stretch the axis to nothing; nan leaves a gap in the line
    return value if value is not None and math.isfinite(value) else math.nan


def compare_figure(curves: Sequence[tuple], panels: Sequence[str],
                   colors: Optional[Sequence[str]] = None, title: str = ""):
    """One panel per column in ``panels`` (train_loss, val_loss, val_acc, ..., lr), one line per
    run in each, labelled and coloured alike in every panel. ``curves`` holds (label, rows of
    metrics.csv) per run. A loss spanning two decades or more (runs of different tasks) or a
    learning rate spanning one gets a log axis. The legend sits under the panels, its labels
    wrapped to the figure's width."""
    import textwrap

    plt = _pyplot()
    colors = list(colors or run_colors(len(curves)))
    width = max(4.2 * len(panels), 7.0)
    chars = max(20, int(width / 0.075))  # a small font's characters per inch, about 13
    texts = [textwrap.fill(label, chars) for label, _ in curves]
    column = max(len(line) for t in texts for line in t.splitlines()) * 0.075 + 0.6
    ncol = max(1, min(len(texts), int(width // column)))
    lines_per_row = max(t.count("\n") + 1 for t in texts)
    rows = -(-len(texts) // ncol)
    legend_height = 0.3 + 0.2 * rows * lines_per_row
    fig = plt.figure(figsize=(width, 3.4 + legend_height))
    grid = fig.add_gridspec(2, len(panels), height_ratios=[3.4, legend_height])
    for i, key in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        values: List[float] = []
        for (label, history), color in zip(curves, colors):
            ys = [_finite(row.get(key)) for row in history]
            ax.plot([row["epoch"] for row in history], ys, color=color, label=label,
                    marker="." if len(history) <= 40 else None, linewidth=1.3)
            values += [y for y in ys if not math.isnan(y)]
        if _spans_decades(values, 1 if key == "lr" else 2):
            log_axis(ax.yaxis, values)
        ax.set_title(COMPARE_TITLES.get(key, key))
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    legend = fig.add_subplot(grid[1, :])
    legend.axis("off")
    legend.legend(fig.axes[0].get_lines(), texts, loc="center", ncol=ncol, frameon=False,
                  fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def plot_compare(curves: Sequence[tuple], panels: Sequence[str], path: Path, *,
                 colors: Optional[Sequence[str]] = None, title: str = "") -> None:
    """compare.png or a sweep's curves.png (see :func:`compare_figure`)."""
    _save(compare_figure(curves, panels, colors, title), path)
