"""``dltrain export``: every model kind to ONNX (onnxruntime against the PyTorch model on the same
raw inputs), torch.export and safetensors round trips, the model card, and what is refused.

The models are built in-process and saved as checkpoints the way training saves them (config,
data_info with its preprocessing record, weights), so no test trains; tests/experiments/
test_export_cli.py runs the real command on a trained run.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from dltrain.data import preprocess
from dltrain.errors import UserError
from dltrain.export import card, check, onnx_format, pt2, weights
from dltrain.export.command import make_stamp, run_export
from dltrain.export.staging import staged
from dltrain.models import build_model
from dltrain.predict.model import load_run
from dltrain.schema import to_dict

import unit_support  # tests/unit, put on sys.path by conftest.py

RECURRENT = {"hidden_size": 6, "num_layers": 1, "bidirectional": False}
# one case per model and input kind, each small: (model, input kind, task, regularization)
CASES = {
    "mlp-table": ({"name": "mlp", "hidden_sizes": [8]}, "table", "classification", {}),
    "mlp-table-regression-bn": ({"name": "mlp", "hidden_sizes": [8, 8]}, "table", "regression",
                                {"batch_norm": True, "dropout": 0.2}),
    "cnn-image-2d-bn": ({"name": "cnn", "channels": [4, 6], "hidden_size": 8}, "image",
                        "classification", {"batch_norm": True}),
    "cnn-sequence-1d": ({"name": "cnn", "channels": [4], "hidden_size": 8}, "sequence",
                        "regression", {}),
    "rnn-sequence": ({"name": "rnn", **RECURRENT, "nonlinearity": "relu"}, "sequence",
                     "classification", {}),
    "lstm-sequence": ({"name": "lstm", **RECURRENT}, "sequence", "classification", {}),
    "gru-image": ({"name": "gru", **RECURRENT}, "image", "classification", {}),
    "lstm-bidirectional-stacked": ({"name": "lstm", **RECURRENT, "num_layers": 2,
                                    "bidirectional": True}, "table", "regression", {"dropout": 0.1}),
    "gru-bidirectional-stacked": ({"name": "gru", **RECURRENT, "num_layers": 2,
                                   "bidirectional": True}, "sequence", "classification", {}),
}
TABLE_COLUMNS = [{"name": "age", "categories": None}, {"name": "color", "categories": ["blue", "red"]},
                 {"name": "height", "categories": None}, {"name": "size", "categories": None}]


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def fake_info(kind: str, task: str):
    """unit_support's DataInfo with the preprocessing record its loader would write."""
    info = unit_support.data_info(kind, task)
    shape = info.input_shape
    if kind == "image":  # raw pixels 0-255, normalized per channel as torchvision sets are
        parts = preprocess.image(shape[-1], shape[0], [0.3] * shape[0], [0.2] * shape[0])
    elif kind == "table":  # a CSV: numeric columns standardized, the one-hot ones as they are
        parts = {**preprocess.table(TABLE_COLUMNS, "target"),
                 "scale": preprocess.scale([40.0, 0.0, 0.0, 170.0, 3.0], [12.0, 1.0, 1.0, 9.0, 0.5])}
    else:
        parts = {"scale": preprocess.scale(np.full((1, shape[1]), 2.0), np.full((1, shape[1]), 0.5))}
    info = preprocess.record(info, **parts)
    if task == "regression":
        k = info.num_outputs
        info = dataclasses.replace(info, target_mean=(10.0,) * k, target_std=(50.0,) * k)
    return info


def write_run(root: Path, model: dict, kind: str, task: str, regularization: dict | None = None,
              *, epoch: int = 3, name: str = "best.pt", info=None, seed: int = 0) -> Path:
    """A run folder with checkpoints/NAME holding what training saves of a fresh model (batch
    norm statistics made non-trivial), as dltrain.train.run.make_checkpoint writes it."""
    config = unit_support.make_config(model=model, regularization=regularization or {})
    info = info or fake_info(kind, task)
    torch.manual_seed(seed)
    net = build_model(config, info)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = root / "checkpoints" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "config": to_dict(config),
                "data_info": dataclasses.asdict(info), "epoch": epoch}, path)
    return root


def raw_inputs(info, n: int, seed: int = 1) -> np.ndarray:
    return check.sample_inputs(info, n, np.random.default_rng(seed))


# tests/experiments/test_use_model.py exports mlp on a table, lstm on sequences and gru on images
# (trained runs, checked against predict too): these are the other shapes of each model
ONNX_ONLY_HERE = [case for case in CASES if case not in ("mlp-table", "lstm-sequence", "gru-image")]


@pytest.fixture(params=ONNX_ONLY_HERE)
def case_run(request, tmp_path):
    model, kind, task, reg = CASES[request.param]
    return write_run(tmp_path / "run", model, kind, task, reg)


def test_onnx_export_matches_pytorch_for_every_model_kind(case_run):
    import onnxruntime

    run_export(case_run, "onnx", console=quiet())

    path = case_run / "export" / "model.onnx"
    trained = load_run(case_run)
    output = "probabilities" if trained.info.task == "classification" else "prediction"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == [output]
    assert isinstance(session.get_inputs()[0].shape[0], str), "the batch dimension is not dynamic"
    for n in (1, 5):
        x = raw_inputs(trained.info, n)
        got = session.run(None, {"input": x})[0]
        np.testing.assert_allclose(got, trained.outputs(x), rtol=0, atol=1e-4)
    stamp = json.loads(session.get_modelmeta().custom_metadata_map["dltrain"])
    assert stamp["class_names"] == list(trained.class_names)
    assert stamp["checkpoint"] == str(trained.checkpoint.resolve())
    assert (case_run / "export" / "MODEL.md").is_file()
    assert sorted(p.name for p in (case_run / "export").iterdir()) == ["MODEL.md", "model.onnx"]


@pytest.mark.parametrize("case", ["mlp-table", "lstm-sequence"])
def test_pt2_round_trip(tmp_path, case):
    model, kind, task, reg = CASES[case]
    run = write_run(tmp_path / "run", model, kind, task, reg)

    run_export(run, "pt2", console=quiet())

    loaded = torch.export.load(run / "export" / "model.pt2").module()
    trained = load_run(run)
    for n in (1, 5):
        x = raw_inputs(trained.info, n)
        with torch.no_grad():
            got = loaded(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, trained.outputs(x), rtol=0, atol=1e-5)
    assert pt2.read_stamp(run / "export" / "model.pt2")["model"] == model["name"]


@pytest.mark.parametrize("case", ["mlp-table-regression-bn", "lstm-sequence"])
def test_safetensors_round_trip(tmp_path, case):
    from safetensors.torch import load_file

    model, kind, task, reg = CASES[case]
    run = write_run(tmp_path / "run", model, kind, task, reg)

    run_export(run, "safetensors", console=quiet())

    folder = run / "export"
    saved = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors.keys() == saved["model"].keys()
    for key, value in saved["model"].items():
        assert torch.equal(tensors[key], value), key
    described = json.loads((folder / "model.json").read_text())
    assert described["config"] == json.loads(json.dumps(saved["config"]))
    assert described["data_info"]["preprocess"] == json.loads(json.dumps(saved["data_info"]["preprocess"]))
    assert described["builder"] == {"function": "dltrain.models.build_model", "model": model["name"]}
    assert described["dltrain"] == __import__("dltrain").__version__
    rebuilt = weights.load_exported(folder)
    trained = load_run(run)
    x = raw_inputs(trained.info, 5)
    np.testing.assert_array_equal(rebuilt.outputs(x), trained.outputs(x))
    assert oct(os.stat(folder / "model.safetensors").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_card_covers_every_export_of_the_checkpoint_and_the_runs_record(tmp_path):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "test_loss": 0.25,
                                                  "test_acc": 0.875, "best_epoch": 3,
                                                  "epochs_completed": 4, "monitor": "val_loss"}))
    (run / "run.yaml").write_text("data:\n  format: 1\n  name: csv\n  files:\n    /d/t.csv:\n"
                                  "      size: 10\n      sha256: abc123\n")

    run_export(run, "safetensors", console=quiet())
    run_export(run, "pt2", console=quiet())

    text = (run / "export" / "MODEL.md").read_text()
    assert "| test_acc | 0.875 |" in text and "sha256: abc123" in text
    assert "`age`, `color=blue`, `color=red`, `height`, `size`" in text
    assert "`probabilities`: float32, shape (N, 4)" in text and "shape (N, 5)" in text
    assert "torch.export.load(\"model.pt2\")" in text and "load_exported(\"model.safetensors\")" in text
    assert "| `model.pt2` |" in text and "| `model.safetensors` |" in text
    assert "not the best one" not in text


def test_card_says_which_checkpoint_the_metrics_are_of_and_lists_foreign_files(tmp_path):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "image", "regression")
    write_run(run, {"name": "mlp", "hidden_sizes": [8]}, "image", "regression", epoch=4,
              name="last.pt", seed=1)
    (run / "summary.json").write_text(json.dumps({"test_loss": 0.5, "best_epoch": 3}))

    run_export(run, "pt2", console=quiet())  # best.pt, epoch 3
    run_export(run, "safetensors", checkpoint="last", console=quiet())

    text = (run / "export" / "MODEL.md").read_text()
    assert "This export is of epoch 4, not the best one" in text
    assert "another model" in text and "best.pt" in text  # model.pt2 is listed, not described
    assert "torch.export.load" not in text
    assert "pixel values 0-255" in text
    assert "in the target's own units" in text and "undone inside the model" in text


def test_exports_of_the_same_weights_from_two_checkpoints_share_the_card(tmp_path):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    write_run(run, {"name": "mlp", "hidden_sizes": [8]}, "table", "classification", name="last.pt")

    run_export(run, "pt2", console=quiet())
    run_export(run, "safetensors", checkpoint="last", console=quiet())

    text = (run / "export" / "MODEL.md").read_text()
    assert "torch.export.load" in text and "load_exported" in text and "another model" not in text


def test_card_of_a_sequence_without_scaling(tmp_path):
    info = dataclasses.replace(unit_support.data_info("sequence", "regression"),
                               preprocess={"version": 1})
    run = write_run(tmp_path / "run", {"name": "gru", **RECURRENT}, "sequence", "regression", info=info)
    trained = load_run(run)
    text = card.render(trained, run, make_stamp(trained), [])
    assert "Sequences of 12 time steps of 3 features each." in text
    assert "no standardization" in text and "undone" not in text
    assert "No test metrics" in text and "No data fingerprint" in text


def test_a_failed_check_writes_nothing_and_keeps_the_previous_export(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    folder = run / "export"
    monkeypatch.setattr(onnx_format, "TOLERANCE", -1.0)
    with pytest.raises(UserError, match=r"max difference .* above the limit -1"):
        run_export(run, "onnx", console=quiet())
    assert sorted(os.listdir(folder)) == []  # no model.onnx, no MODEL.md, no staging folder

    run_export(run, "pt2", console=quiet())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(pt2, "TOLERANCE", -1.0)
    with pytest.raises(UserError, match="max difference"):
        run_export(run, "pt2", console=quiet())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("fmt,module", [("onnx", "onnxruntime"), ("onnx", "onnxscript"),
                                        ("safetensors", "safetensors")])
def test_without_the_export_extra_the_error_names_it(tmp_path, monkeypatch, capsys, fmt, module):
    from dltrain import cli

    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError

    with pytest.raises(SystemExit) as e:
        cli.main(["export", str(run), "--format", fmt])

    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--format {fmt} needs {module}" in err and 'pip install "dltrain[export]"' in err
    assert not (run / "export").exists()


def test_pt2_needs_no_extra(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    for module in ("onnx", "onnxruntime", "onnxscript", "safetensors"):
        monkeypatch.setitem(sys.modules, module, None)
    run_export(run, "pt2", console=quiet())
    assert (run / "export" / "model.pt2").is_file()


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    path = run / "checkpoints" / "best.pt"
    marker = tmp_path / "MARKER"
    torch.save({**torch.load(path, weights_only=True), "hook": RunsCode(marker)}, path)

    with pytest.raises(UserError, match="refusing to load"):
        run_export(run, "onnx", console=quiet())

    assert not marker.exists(), "loading the checkpoint ran its code"
    assert not (run / "export").exists()


def test_a_checkpoint_from_before_the_preprocessing_record_is_refused(tmp_path):
    info = dataclasses.replace(unit_support.data_info("table", "classification"), preprocess={})
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table",
                    "classification", info=info)
    with pytest.raises(UserError, match="written before dltrain saved the preprocessing") as e:
        run_export(run, "pt2", console=quiet())
    assert "\n" not in str(e.value)
    assert not (run / "export").exists()


def test_out_may_not_be_a_file(tmp_path):
    run = write_run(tmp_path / "run", {"name": "mlp", "hidden_sizes": [8]}, "table", "classification")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        run_export(run, "pt2", out=tmp_path / "file", console=quiet())


def test_check_inputs_look_like_the_training_data():
    image = check.sample_inputs(fake_info("image", "classification"), 50, np.random.default_rng(0))
    assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 255
    assert np.array_equal(image, np.round(image)) and image.std() > 10
    table = check.sample_inputs(fake_info("table", "classification"), 50, np.random.default_rng(0))
    assert set(np.unique(table[:, 1:3])) == {0.0, 1.0} and (table[:, 1:3].sum(axis=1) == 1).all()
    assert abs(table[:, 0].mean() - 40) < 6


def test_staged_replaces_only_on_success(tmp_path):
    (tmp_path / "model.onnx").write_text("old")
    (tmp_path / "model.onnx.data").write_text("old weights")
    with pytest.raises(RuntimeError), staged(tmp_path, onnx_format.FILES) as folder:
        (folder / "model.onnx").write_text("half")
        raise RuntimeError
    assert (tmp_path / "model.onnx").read_text() == "old"
    with staged(tmp_path, onnx_format.FILES) as folder:
        (folder / "model.onnx").write_text("new")
    # the new export has its weights inside: the old external weights must not stay beside it
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_text() == "new"
