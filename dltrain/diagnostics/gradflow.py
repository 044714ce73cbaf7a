"""gradflow.png: how the gradient flows through the layers (and through time), epoch by epoch.

:func:`gradflow_figure` builds the figure from diagnostics.csv's rows (tests read its axes);
:func:`plot_gradflow` writes it. matplotlib is imported inside them only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

from dltrain.diagnostics.csv_file import Row, read_rows

GRADFLOW = "gradflow.png"
# panel titles (tests find the panels by them)
GRAD_TITLE = "gradient norm per layer"
UPDATE_TITLE = "update ratio ‖Δw‖/‖w‖"
HEALTH_TITLE = "dead and saturated units"
HIDDEN_TITLE = "hidden-state gradient ‖∂loss/∂h_t‖"
HIDDEN = (("hidden_grad_first", "first"), ("hidden_grad_middle", "middle"),
          ("hidden_grad_last", "last"))
MAX_LEGEND_EPOCHS = 6  # more epochs than this: a colour bar instead of a legend


def _positive(value: float) -> float:
    """Log axes show positive finite values; the others leave a gap."""
    return value if math.isfinite(value) and value > 0 else float("nan")


def gradflow_figure(rows: Sequence[Row], title: str):
    """Panels, those with rows to show: the gradient norm per layer (model order, log scale),
    one line per epoch coloured from light to dark; the update ratio the same way; the dead and
    saturated shares per layer at the last epoch; for recurrent models the hidden-state gradient
    at the first, middle and last step, one line per epoch. None when there is nothing to draw.
    """
    from dltrain.plots import _pyplot, log_axis

    plt = _pyplot()
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    layers = list(dict.fromkeys(layer for _, layer, _, _ in rows))
    epochs = sorted({epoch for epoch, _, _, _ in rows})
    value: Dict[Tuple[int, str, str], float] = {(e, layer, q): v for e, layer, q, v in rows}
    has = {q for _, _, q, _ in rows}
    last = epochs[-1] if epochs else 0
    health = [q for q in ("dead_fraction", "saturated_fraction")
              if any((last, layer, q) in value for layer in layers)]
    panels = [name for name, shown in (("grad_norm", "grad_norm" in has),
                                        ("update_ratio", "update_ratio" in has),
                                        ("health", bool(health)),
                                        ("hidden", "hidden_grad_last" in has)) if shown]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    ax_of = dict(zip(panels, axes[0]))
    # viridis without its last, pale yellow part, which hardly shows on white
    cmap = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)))
    norm = Normalize(vmin=epochs[0], vmax=max(epochs[-1], epochs[0] + 1))
    legend = len(epochs) <= MAX_LEGEND_EPOCHS

    def by_epoch(ax, quantity_of, labels: List[str]) -> None:
        """One line per epoch over ``labels`` (x positions); ``quantity_of(i)`` the
        (layer, quantity) of position i."""
        shown: List[float] = []
        for epoch in epochs:
            ys = [_positive(value.get((epoch, *quantity_of(i)), float("nan")))
                  for i in range(len(labels))]
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(range(len(labels)), ys, marker=".", color=cmap(norm(epoch)),
                    label=f"epoch {epoch}")
            shown += [y for y in ys if not math.isnan(y)]
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0,
                      ha="right" if len(labels) > 4 else "center")
        if shown:
            log_axis(ax.yaxis, shown)
        ax.grid(alpha=0.3)
        if legend and shown:
            ax.legend(fontsize="small")

    for quantity, panel_title, ylabel in (("grad_norm", GRAD_TITLE, "‖∇w‖ (mean over steps)"),
                                          ("update_ratio", UPDATE_TITLE, "ratio (mean over steps)")):
        if quantity in ax_of:
            ax = ax_of[quantity]
            measured = [layer for layer in layers
                        if any((e, layer, quantity) in value for e in epochs)]
            by_epoch(ax, lambda i, m=measured, q=quantity: (m[i], q), measured)
            ax.set_title(panel_title)
            ax.set_xlabel("layer")
            ax.set_ylabel(ylabel)
    if "health" in ax_of:
        ax = ax_of["health"]
        measured = [layer for layer in layers if any((last, layer, q) in value for q in health)]
        width = 0.8 / len(health)
        for k, (quantity, color) in enumerate(zip(health, ("tab:red", "tab:orange"))):
            xs = [i + (k - (len(health) - 1) / 2) * width for i in range(len(measured))]
            bars = ax.bar(xs, [value.get((last, layer, quantity), 0.0) for layer in measured],
                          width, color=color, label=quantity.split("_")[0])
            ax.bar_label(bars, fmt="%.2f", fontsize="x-small")  # a share of 0 shows as 0.00
        ax.set_xticks(range(len(measured)), measured,
                      rotation=30 if len(measured) > 4 else 0,
                      ha="right" if len(measured) > 4 else "center")
        ax.set_ylim(0, 1)
        ax.set_title(f"{HEALTH_TITLE} (epoch {last})")
        ax.set_xlabel("layer")
        ax.set_ylabel("share of units")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize="small")
    if "hidden" in ax_of:
        ax = ax_of["hidden"]
        layer = next(layer for _, layer, q, _ in rows if q == "hidden_grad_last")
        by_epoch(ax, lambda i: (layer, HIDDEN[i][0]), [label for _, label in HIDDEN])
        ax.set_title(HIDDEN_TITLE)
        ax.set_xlabel("time step")
        ax.set_ylabel("mean over probe samples")
    if not legend:
        lined = [ax_of[p] for p in ("grad_norm", "update_ratio", "hidden") if p in ax_of]
        if lined:
            fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=lined[-1], label="epoch")
    fig.suptitle(title)
    return fig


def plot_gradflow(rows: Union[Sequence[Row], str, Path], out_path: Path, title: str) -> None:
    """gradflow.png (see :func:`gradflow_figure`) from rows or a diagnostics.csv; nothing is
    written when there is nothing to draw."""
    from dltrain.plots import _save

    if isinstance(rows, (str, Path)):
        rows = read_rows(Path(rows))
    if rows:
        fig = gradflow_figure(rows, title)
        if fig is not None:
            _save(fig, Path(out_path))
