"""The three ways to use a trained model agree: ``load_run(...).predict``, ``dltrain predict``
and the ONNX export run by onnxruntime, for each model on each kind of data (pairwise: every
model and every kind appear, not every product)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dltrain import cli, load_run
from dltrain.export.command import run_export
from dltrain.predict.inputs import read_batches
from dltrain.predict.model import ClassPredictions

from tests.data.data_support import train

from .test_predict import people_csv

pytestmark = pytest.mark.slow

SYNTHETIC = {"name": "synthetic", "num_samples": 90, "num_classes": 3}
CASES = {
    # name: (model, data config, the input's kind)
    "mlp-table": ("mlp", "csv", "table"),
    "cnn-image": ("cnn", {**SYNTHETIC, "shape": [1, 8, 8]}, "image"),
    "cnn-sequence": ("cnn", {**SYNTHETIC, "shape": [12, 3]}, "sequence"),
    "lstm-sequence": ("lstm", {"name": "sine", "num_samples": 80, "seq_len": 12, "horizon": 2},
                      "sequence"),
    "gru-image": ("gru", {**SYNTHETIC, "shape": [1, 6, 6]}, "image"),
    "rnn-sequence": ("rnn", {"name": "adding", "num_samples": 80, "seq_len": 10}, "sequence"),
}


def raw_inputs(run: Path, tmp_path: Path) -> Path:
    """An input file for the run: the CSV it trained on, or raw arrays (its test split with the
    standardization undone, so they are what a user holds) in an .npz."""
    from dltrain.data import load_data

    model = load_run(run)
    if model.config.data.name == "csv":
        return Path(model.config.data.path)
    x = load_data(model.config.data).test.x.numpy()
    scale = model.info.preprocess.get("scale")
    if scale is not None:
        x = x * np.asarray(scale["std"]) + np.asarray(scale["mean"])
    path = tmp_path / "inputs.npz"
    np.savez(path, x=x.astype(np.float32))
    return path


@pytest.mark.parametrize("case", CASES)
def test_python_cli_and_onnx_agree(case, tmp_path):
    model_name, data, kind = CASES[case]
    run = tmp_path / "run"
    if data == "csv":
        data = {"name": "csv", "path": str(people_csv(tmp_path / "train.csv")), "target": "label"}
    train(data, run, model=model_name, epochs=1)
    inputs = raw_inputs(run, tmp_path)
    model = load_run(run)
    assert model.info.kind == kind

    # Python
    python = model.predict(str(inputs))
    outputs = python.probabilities if isinstance(python, ClassPredictions) else python

    # the command line (in this process: the same code path as the installed command)
    out = tmp_path / "preds.csv"
    with pytest.raises(SystemExit) as done:
        cli.main(["predict", str(run), str(inputs), "--out", str(out)])
    assert done.value.code == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith(("p_", "prediction"))]
    if isinstance(python, ClassPredictions):
        columns = [c for c in columns if c.startswith("p_")]
        names = [rows[i]["prediction"] for i in range(len(rows))]
        assert names == [model.class_names[i] for i in python.index]
    from_cli = np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(from_cli, outputs, rtol=1e-6, atol=1e-7)

    # ONNX through onnxruntime, on the same raw inputs as the model reads them
    import onnxruntime

    run_export(str(run), "onnx", out=str(tmp_path / "export"), checkpoint="best",
               console=Console(quiet=True))
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    x = np.concatenate([b.x for b in read_batches(str(inputs), model.info, 1024)])
    (from_onnx,) = session.run(None, {"input": x})
    np.testing.assert_allclose(from_onnx, outputs, atol=1e-4, rtol=0)
    assert len(rows) == len(x) > 0
