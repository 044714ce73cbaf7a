"""MODEL.md, the model card written beside every export: what was trained on what data, how
well it did, the input it expects, the output it gives, and how to load each file.

The card covers every export in its folder that holds the same model (each export file carries
a stamp with a digest of its weights, config and data facts), so exporting onnx, then
safetensors, then pt2 into one folder leaves one card for all three. Files of another model
(another checkpoint, or the run trained again) are only listed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from dltrain import runs, schema
from dltrain.data.base import DataInfo
from dltrain.predict.model import TrainedModel

FILE = "MODEL.md"
FORMAT_NAMES = {"onnx": "ONNX", "safetensors": "safetensors weights", "pt2": "torch.export program"}


@dataclass
class FoundExport:
    """An export found in the folder: its format, files and stamp (None if it has none)."""

    format: str
    files: List[Path]
    stamp: Optional[Dict[str, Any]]


def render(trained: TrainedModel, root: Optional[Path], stamp: Dict[str, Any],
           exports: Sequence[FoundExport]) -> str:
    info, config = trained.info, trained.config
    record = runs.read_record(root) if root is not None else {}
    summary = _summary(root)
    ours = [e for e in exports if _same_model(e, stamp)]
    parts = [
        f"# {config.model.name} on {info.name}\n",
        f"Exported by dltrain {stamp['dltrain']} (torch {stamp['torch']}) on {stamp['exported']}.\n",
        "| | |\n|---|---|\n"
        + (f"| run folder | `{root}` |\n" if root is not None else "")
        + f"| checkpoint | `{stamp['checkpoint']}` |\n"
        + f"| epoch | {_value(stamp['epoch'])} |\n"
        + f"| checkpoint sha256 | `{stamp['checkpoint_sha256']}` |\n"
        + f"| model sha256 | `{stamp['model_sha256']}` (weights, config and data facts) |\n",
        "## What was trained\n\n" + _trained(trained, summary),
        "## Data\n\n" + _data(info, record),
        "## Test metrics\n\n" + _metrics(summary, stamp),
        "## Input\n\n" + _input(info, stamp),
        "## Output\n\n" + _output(info, stamp),
        "## Files\n\n" + _files(exports, stamp),
        "## Load it\n\nThe paths are relative to this folder.\n\n"
        + "\n".join(SNIPPETS[e.format](info, stamp) for e in ours),
    ]
    return "\n".join(parts)


def _summary(root: Optional[Path]) -> Dict[str, Any]:
    path = root / runs.SUMMARY if root is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _options(node: Any) -> str:
    values = schema.fields_of(node)
    inner = ", ".join(f"{k} {_value(v)}" for k, v in values.items())
    return f"`{node.name}`" + (f" ({inner})" if inner else "")


def _trained(trained: TrainedModel, summary: Dict[str, Any]) -> str:
    config = trained.config
    reg, tr = config.regularization, config.trainer
    params = sum(p.numel() for p in trained.model.parameters())
    decay = "the optimizer default" if reg.weight_decay is None else _value(reg.weight_decay)
    lines = [
        (f"- model: {_options(config.model)}, activation {_options(config.activation)}; "
         f"{params:,} parameters"),
        (f"- regularization: dropout {_value(reg.dropout)}, weight decay {decay}, "
         f"L1 {_value(reg.l1)}, batch norm {'on' if reg.batch_norm else 'off'}"),
        (f"- loss {_options(config.loss)}, optimizer {_options(config.optim)}, "
         f"schedule {_options(config.sched)}"),
        (f"- {_count(tr.epochs, 'epoch')} of batches of {tr.batch_size}, seed {tr.seed}, "
         f"precision {tr.precision}"),
    ]
    if summary:
        done = summary.get("epochs_completed")
        lines.append(f"- status: {summary.get('status')} after {_count(done, 'epoch')}"
                     + (f" ({summary['reason']})" if summary.get("reason") else "")
                     + f"; best epoch {summary.get('best_epoch')} by {summary.get('monitor')}")
    return "\n".join(lines) + "\n"


def _data(info: DataInfo, record: Dict[str, Any]) -> str:
    import yaml

    task = (f"classification into {info.num_outputs} classes" if info.task == "classification"
            else f"regression of {info.num_outputs} value{'s' if info.num_outputs > 1 else ''}")
    text = f"`{info.name}`: {task}, {info.kind} input of shape {tuple(info.input_shape)}.\n\n"
    fingerprint = record.get("data")
    if not fingerprint:
        return text + "No data fingerprint (run.yaml predates them or is missing).\n"
    dump = yaml.safe_dump(fingerprint, sort_keys=False, allow_unicode=True).rstrip()
    return (text + "The fingerprint recorded in run.yaml (what `dltrain replay` and `eval` check "
            f"the data against):\n\n```yaml\n{dump}\n```\n")


def _metrics(summary: Dict[str, Any], stamp: Dict[str, Any]) -> str:
    metrics = {k: v for k, v in summary.items() if k.startswith("test_")}
    if not metrics:
        return "No test metrics (the run folder has no summary.json with them).\n"
    rows = "".join(f"| {k} | {_value(v)} |\n" for k, v in metrics.items())
    best = summary.get("best_epoch")
    text = (f"From summary.json: the best checkpoint (epoch {best}) on the test split.\n\n"
            f"| metric | value |\n|---|---|\n{rows}")
    if stamp["epoch"] != best:
        text += (f"\nThis export is of epoch {stamp['epoch']}, not the best one: "
                 f"`dltrain eval {stamp['checkpoint']}` measures it.\n")
    return text


def _input(info: DataInfo, stamp: Dict[str, Any]) -> str:
    shape = ", ".join(["N", *map(str, info.input_shape)])
    text = (f"`{stamp['input']}`: float32, shape ({shape}); N, the batch size, may be any number "
            "(1 or more).\n\n")
    pre = info.preprocess
    if info.kind == "image":
        c, h, w = info.input_shape
        text += f"Images of {c} channel{'s' if c > 1 else ''}, {h}x{w} pixels, channels first. "
        image = pre.get("image")
        if image:
            text += ("The values are pixel values 0-255 (as float32, not divided by 255). "
                     f"`dltrain predict` turns an image file into this by resizing its shorter "
                     f"side to {image['size']} pixels and cropping the centre.\n")
        else:
            text += "The values are on the data set's own scale.\n"
    elif info.kind == "sequence":
        t, f = info.input_shape
        text += f"Sequences of {t} time steps of {f} feature{'s' if f > 1 else ''} each.\n"
    else:
        text += _table(info)
    scale = pre.get("scale")
    if scale:
        text += ("\nGive the raw values: the standardization `(x - mean) / std` fitted on the "
                 "training split is inside the model, with " + _stats(scale) + ".\n")
    else:
        text += "\nThe model reads the values as they are (no standardization).\n"
    return text


def _table(info: DataInfo) -> str:
    table = info.preprocess.get("table")
    width = info.input_shape[0]
    if not table:
        return f"Rows of {width} numbers, in the data set's column order.\n"
    names: List[str] = []
    for column in table["columns"]:
        if column["categories"] is None:
            names.append(f"`{column['name']}`")
        else:
            names += [f"`{column['name']}={c}`" for c in column["categories"]]
    text_columns = [c["name"] for c in table["columns"] if c["categories"] is not None]
    text = f"Rows of {width} numbers, in this order: {', '.join(names)}.\n"
    if text_columns:
        text += ("A text column is one-hot: its column for the row's value holds 1, the others "
                 f"0 (text columns: {', '.join(text_columns)}). `dltrain predict` builds these "
                 "from a CSV with the training columns.\n")
    return text


def _stats(scale: Dict[str, Any]) -> str:
    mean, std = np.asarray(scale["mean"]), np.asarray(scale["std"])
    if mean.size <= 12:
        return f"mean {_numbers(mean)} and std {_numbers(std)}"
    return (f"{mean.size} means ({mean.min():.4g} to {mean.max():.4g}) and stds "
            f"({std.min():.4g} to {std.max():.4g})")


def _numbers(a: np.ndarray) -> str:
    values = [f"{v:.4g}" for v in a.ravel()]
    return values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"


def _output(info: DataInfo, stamp: Dict[str, Any]) -> str:
    k = info.num_outputs
    if info.task == "classification":
        names = ", ".join(f"`{n}`" for n in info.class_names) or f"{k} classes"
        return (f"`{stamp['output']}`: float32, shape (N, {k}): the probability of each class "
                f"(a softmax; each row sums to 1), columns in this order: {names}. The predicted "
                "class is the column with the largest probability.\n")
    table = info.preprocess.get("table")
    target = f" (the column `{table['target']}`)" if table else ""
    undone = ("; the standardization of the target used in training is undone inside the model"
              if info.target_std else "")
    return (f"`{stamp['output']}`: float32, shape (N, {k}): the predicted value"
            f"{'s' if k > 1 else ''} in the target's own units{target}{undone}.\n")


def _files(exports: Sequence[FoundExport], stamp: Dict[str, Any]) -> str:
    rows = []
    for e in exports:
        if _same_model(e, stamp):
            origin = "this model"
            if e.format == "onnx" and e.stamp.get("opset"):
                origin += f", opset {e.stamp['opset']}"
        elif e.stamp:
            origin = (f"another model, from `{e.stamp.get('checkpoint')}` (epoch "
                      f"{e.stamp.get('epoch')}): export it again to describe it here")
        else:
            origin = "unknown (no dltrain stamp)"
        for path in e.files:
            rows.append(f"| `{path.name}` | {human_size(path.stat().st_size)} | "
                        f"{FORMAT_NAMES[e.format]} | {origin} |\n")
    return "| file | size | format | from |\n|---|---|---|---|\n" + "".join(rows)


def _same_model(export: FoundExport, stamp: Dict[str, Any]) -> bool:
    return bool(export.stamp) and export.stamp.get("model_sha256") == stamp["model_sha256"]


def _onnx(info: DataInfo, stamp: Dict[str, Any]) -> str:
    out = stamp["output"]
    return f"""### ONNX, with onnxruntime alone

```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx")
{out} = session.run(None, {{"{stamp['input']}": x.astype(np.float32)}})[0]  # x: {_shape(info)}
```

The stamp (checkpoint, class names, input and output) is in the model's metadata:
`json.loads(session.get_modelmeta().custom_metadata_map["dltrain"])`.
"""


def _pt2(info: DataInfo, stamp: Dict[str, Any]) -> str:
    return f"""### torch.export program, with torch alone

```python
import torch
model = torch.export.load("model.pt2").module()
with torch.no_grad():
    {stamp['output']} = model(torch.as_tensor(x, dtype=torch.float32)).numpy()  # x: {_shape(info)}
```
"""


def _safetensors(info: DataInfo, stamp: Dict[str, Any]) -> str:
    return f"""### safetensors weights, rebuilt by dltrain

```python
from dltrain.export.weights import load_exported
model = load_exported("model.safetensors")  # reads model.json beside it, like dltrain.load_run
{stamp['output']} = model.outputs(x)  # x: {_shape(info)}; model.predict also reads files
```

Without dltrain, `safetensors.torch.load_file("model.safetensors")` gives the state dict;
model.json holds the config, the data facts with the preprocessing, and the builder's name.
"""


SNIPPETS = {"onnx": _onnx, "safetensors": _safetensors, "pt2": _pt2}


def _shape(info: DataInfo) -> str:
    return f"float array ({', '.join(['N', *map(str, info.input_shape)])})"


def human_size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)
