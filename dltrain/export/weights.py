"""safetensors: the model's weights in ``model.safetensors`` and, in ``model.json``, everything
that rebuilds the model around them (config, data facts with the preprocessing and class
names, the builder), read back by :func:`load_exported`.

A safetensors file holds tensors only and never runs code on load, unlike a pickle.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from dltrain import schema
from dltrain.errors import UserError
from dltrain.export import check
from dltrain.predict.model import TrainedModel

FILE = "model.safetensors"
CONFIG = "model.json"
FILES = (FILE, CONFIG)
FORMAT = 1  # of model.json


def export(trained: TrainedModel, folder: Path, stamp: Dict[str, Any]) -> str:
    """Write ``folder/model.safetensors`` and ``folder/model.json``, read them back and check
    them; the line that says how it went."""
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in trained.model.state_dict().items()}
    # "format": "pt" tells safetensors' readers (transformers among them) the tensors are torch's
    save_file(state, str(folder / FILE), metadata={"format": "pt", "dltrain": json.dumps(stamp)})
    description = {
        "format": FORMAT,
        "weights": FILE,
        "dltrain": stamp["dltrain"],
        "torch": stamp["torch"],
        # dltrain.models.build_model(config, data_info) calls the builder registered under this
        # name in dltrain.models.MODELS, with the config's model keys
        "builder": {"function": "dltrain.models.build_model", "model": trained.config.model.name},
        "config": schema.to_dict(trained.config),
        "data_info": dataclasses.asdict(trained.info),
        "export": stamp,
    }
    (folder / CONFIG).write_text(json.dumps(description, indent=2) + "\n")

    loaded = load_file(str(folder / FILE))
    if loaded.keys() != state.keys():
        raise UserError(f"{FILE} read back holds other tensors than the model; the export was "
                        "not written")
    for name, tensor in state.items():
        if loaded[name].dtype != tensor.dtype or not torch.equal(loaded[name], tensor):
            raise UserError(f"{FILE} read back differs from the model in {name}; the export was "
                            "not written")
    rebuilt = load_exported(folder / FILE)
    worst = check.compare(rebuilt.outputs, trained, f"the model rebuilt from {CONFIG}", 0.0)
    return (f"checked: {len(state)} tensors read back equal; the model rebuilt from {CONFIG} "
            f"gives the same outputs (max difference {worst:g})")


def load_exported(path: Union[str, Path], device: str = "cpu") -> TrainedModel:
    """The model of a safetensors export (``model.safetensors`` or its folder), rebuilt by
    dltrain from ``model.json`` beside it, as :func:`dltrain.load_run` returns it."""
    from safetensors.torch import load_file

    from dltrain.device import resolve_device
    from dltrain.models import build_model
    from dltrain.predict.model import info_from

    path = Path(path)
    if path.is_dir():
        path = path / FILE
    try:
        description = json.loads((path.parent / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path.parent / CONFIG} (it describes {path}): {e}") from None
    config = schema.load_config(description["config"])
    info = info_from(description["data_info"], path)
    model = build_model(config, info)
    try:
        model.load_state_dict(load_file(str(path)))
    except (OSError, RuntimeError) as e:
        raise UserError(f"cannot load {path} into the model {CONFIG} describes: "
                        f"{str(e).splitlines()[0]}") from None
    target = resolve_device(device)
    epoch: Optional[int] = description.get("export", {}).get("epoch")
    return TrainedModel(model.to(target).eval(), config, info, path, target, epoch)


def read_stamp(path: Path) -> Optional[Dict[str, Any]]:
    """The stamp an export wrote beside ``path`` (None without one)."""
    return json.loads((path.parent / CONFIG).read_text()).get("export")
