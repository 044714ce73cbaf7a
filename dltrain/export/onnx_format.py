"""ONNX: the model from raw input to probabilities (or target-unit values) in one graph, so a
consumer needs onnxruntime and nothing else.

Exported with torch.onnx's dynamo exporter (``dynamo=True``, torch 2.14's default), which traces
with torch.export. It handles every dltrain model, the recurrent ones included (checked by
tests/unit/test_export.py for mlp, cnn 1-D and 2-D, rnn, lstm, gru, bidirectional and stacked),
so no model needs the TorchScript-based exporter (``dynamo=False``), deprecated with TorchScript.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch

from dltrain.errors import UserError
from dltrain.export import check
from dltrain.predict.model import TrainedModel

FILE = "model.onnx"
FILES = (FILE, f"{FILE}.data")  # .data: the weights, beside the graph only past ONNX's 2 GB
TOLERANCE = 1e-4
METADATA_KEY = "dltrain"  # the stamp, JSON, in the model's metadata_props


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    # the exporter warns about torch internals (deprecated helpers it calls, RNN weights it
    # sees assigned while tracing) that say nothing about the model and that a user cannot act on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export(trained: TrainedModel, folder: Path, stamp: Dict[str, Any]) -> str:
    """Write ``folder/model.onnx``, check it with onnxruntime; the line that says how it went."""
    import onnx
    import onnxruntime

    rng = np.random.default_rng(check.SEED)
    sample = torch.from_numpy(check.sample_inputs(trained.info, check.EXPORT_BATCH, rng))
    try:
        with quiet():
            program = torch.onnx.export(
                trained.predictor, (sample,), None, dynamo=True, verbose=False,
                input_names=[stamp["input"]], output_names=[stamp["output"]],
                # Predictor.forward(x): its first dimension is the batch
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception as e:  # torch.onnx and torch.export raise many kinds
        raise UserError(f"torch.onnx.export failed for the {stamp['model']} model: "
                        f"{type(e).__name__}: {_first_line(e)}") from None
    opset = program.model.opset_imports.get("")
    program.model.metadata_props[METADATA_KEY] = json.dumps({**stamp, "opset": opset})
    path = folder / FILE
    program.save(str(path))  # one file; the weights go beside it only past 2 GB
    onnx.checker.check_model(str(path))  # by path: it then finds external weights too
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes about graph optimizations
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst = check.compare(lambda x: session.run(None, {stamp["input"]: x})[0], trained,
                          "the ONNX model in onnxruntime", TOLERANCE)
    return check.describe(f"onnxruntime {onnxruntime.__version__} (opset {opset})", worst,
                          TOLERANCE, trained.info)


def read_stamp(path: Path) -> Optional[Dict[str, Any]]:
    """The stamp an export wrote into ``path`` (None without one)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""
