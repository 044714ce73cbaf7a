"""torch.export (.pt2): the model from raw input to probabilities (or target-unit values) as an
ExportedProgram, loadable with ``torch.export.load`` and no dltrain.

PyTorch 2 deprecates TorchScript; torch.export is its successor. Every dltrain model exports
with a dynamic batch dimension, the recurrent ones included (tests/unit/test_export.py).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from dltrain.errors import UserError
from dltrain.export import check
from dltrain.export.onnx_format import quiet
from dltrain.predict.model import TrainedModel

FILE = "model.pt2"
FILES = (FILE,)
TOLERANCE = 1e-5
EXTRA = "dltrain.json"  # the stamp, among the archive's extra files


def export(trained: TrainedModel, folder: Path, stamp: Dict[str, Any]) -> str:
    """Write ``folder/model.pt2``, load it back and check it; the line that says how it went."""
    rng = np.random.default_rng(check.SEED)
    sample = torch.from_numpy(check.sample_inputs(trained.info, check.EXPORT_BATCH, rng))
    try:
        with quiet():
            program = torch.export.export(trained.predictor, (sample,),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception as e:  # torch.export raises many kinds
        lines = str(e).strip().splitlines()
        raise UserError(f"torch.export failed for the {stamp['model']} model: "
                        f"{type(e).__name__}: {lines[0] if lines else ''}") from None
    path = folder / FILE
    torch.export.save(program, path, extra_files={EXTRA: json.dumps(stamp)})
    with quiet():
        loaded = torch.export.load(path).module()

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return loaded(torch.from_numpy(x)).numpy()

    worst = check.compare(run, trained, "the torch.export program", TOLERANCE)
    return check.describe("torch.export.load(...).module()", worst, TOLERANCE, trained.info)


def read_stamp(path: Path) -> Optional[Dict[str, Any]]:
    """The stamp an export wrote into ``path`` (None without one), read from the archive
    without loading the program: a .pt2 is a zip whose extra files sit under ``<name>/extra/``."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(f"/extra/{EXTRA}"):
                return json.loads(archive.read(name))
    return None
