"""Gradient flow and layer health, measured while training (``trainer.diagnostics``).

:class:`Diagnostics` adds up, at the loop's log steps, each layer's gradient norm and relative
update on the device, and at the end of an epoch runs a probe batch through the model (dead and
saturated units, and for recurrent models the gradient reaching the hidden state at the first,
middle and last step); it reads the device once per epoch. :class:`DiagnosticsWriter` keeps the
rows in the run folder's diagnostics.csv; :func:`plot_gradflow` draws them as gradflow.png.

Torch is imported on first use of what needs it: the CSV and the figure read without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from dltrain.diagnostics.csv_file import (
    DIAGNOSTICS,
    QUANTITIES,
    DiagnosticsWriter,
    read_rows,
)
from dltrain.diagnostics.gradflow import GRADFLOW, gradflow_figure, plot_gradflow

_LAZY = {name: "dltrain.diagnostics.recorder"
         for name in ("Diagnostics", "layers_with_parameters", "wanted", "MAX_AUTO_LAYERS")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DIAGNOSTICS", "GRADFLOW", "MAX_AUTO_LAYERS", "QUANTITIES", "Diagnostics",
           "DiagnosticsWriter", "gradflow_figure", "layers_with_parameters", "plot_gradflow",
           "read_rows", "wanted"]
