"""What turns a raw input into the model's input, recorded with the data's facts
(``DataInfo.preprocess``) so that a run folder alone can predict and export.

Plain data only (numbers, strings, lists, dicts), so a checkpoint still loads with
``weights_only=True``. The parts:

- ``scale``: ``{"mean", "std"}``, nested lists broadcastable to the input shape: the model sees
  ``(x - mean) / std`` of the raw input ``x`` (raw: grey levels 0-255 for images, the numbers of
  a table or a sequence as they are in the file);
- ``image``: ``{"size", "channels", "resize"}``: how an image file becomes a uint8
  ``(channels, size, size)`` array (``fit``: shorter side to ``size``, then a centred crop);
- ``table``: ``{"columns": [{"name", "categories"}], "target"}``: a CSV row's features in order,
  numeric columns as they are (``categories`` null) and text columns one-hot over
  ``categories``.

No part is absent by accident: ``version`` is always set, and a record without it comes from a
checkpoint written before dltrain recorded its preprocessing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from dltrain.data.base import DataInfo

VERSION = 1


def record(info: DataInfo, **parts: Any) -> DataInfo:
    """``info`` with ``parts`` added to its preprocessing record."""
    return dataclasses.replace(info, preprocess={**info.preprocess, "version": VERSION, **parts})


def scale(mean: np.ndarray, std: np.ndarray) -> Dict[str, Any]:
    """The ``scale`` part from arrays broadcastable to the input shape."""
    return {"mean": np.asarray(mean, dtype=np.float64).tolist(),
            "std": np.asarray(std, dtype=np.float64).tolist()}


def image(size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> Dict[str, Any]:
    """The ``image`` and ``scale`` parts of images normalized as ``(x / 255 - mean) / std``
    per channel: on the raw 0-255 scale that is ``(x - 255 mean) / (255 std)``."""
    shape = (len(mean), 1, 1)
    return {"image": {"size": int(size), "channels": int(channels), "resize": "fit"},
            "scale": scale(np.reshape(mean, shape) * 255, np.reshape(std, shape) * 255)}


def table(columns: List[Dict[str, Optional[List[str]]]], target: str) -> Dict[str, Any]:
    return {"table": {"columns": columns, "target": target}}
