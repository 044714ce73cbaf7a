"""``dltrain export RUN --format onnx|safetensors|pt2``: the run's model in a file another
program loads, checked after writing, with a model card (MODEL.md) beside it.

Nothing heavy is imported here until an export runs, and the extra a format needs is looked
for before the checkpoint is loaded, so a missing one is named at once.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from rich.console import Console

from dltrain.errors import UserError

if TYPE_CHECKING:
    from dltrain.export.card import FoundExport
    from dltrain.predict.model import TrainedModel

# format -> the module that writes it; its FILES are the names it owns in the folder, the
# first being the one that carries its stamp
FORMATS = {"onnx": "dltrain.export.onnx_format", "safetensors": "dltrain.export.weights",
           "pt2": "dltrain.export.pt2"}
# what each format imports beyond torch: the [export] extra (pyproject.toml)
NEEDS = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "safetensors": ("safetensors",), "pt2": ()}
EXTRA = 'pip install "dltrain[export]"'
INPUT = "input"
OUTPUTS = {"classification": "probabilities", "regression": "prediction"}


def require(fmt: str) -> None:
    """A :class:`UserError` naming the extra when a module ``fmt`` needs cannot be imported."""
    for name in NEEDS[fmt]:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"--format {fmt} needs {name}, which cannot be imported ({e}): "
                            f"{EXTRA}") from None


def run_export(run: Union[str, Path], fmt: str, *, out: Optional[Union[str, Path]] = None,
               checkpoint: str = "best", console: Console) -> List[Path]:
    """Export the model of ``run`` (a run folder or a checkpoint file) as ``fmt`` into ``out``
    (default ``RUN/export/``), check it, write MODEL.md beside it; the files written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not known; known: {', '.join(FORMATS)}")
    require(fmt)
    from dltrain.atomic import atomic_write_text
    from dltrain.export import card
    from dltrain.export.staging import staged
    from dltrain.predict.model import load_run

    start = time.perf_counter()
    trained = load_run(run, checkpoint, device="cpu")
    root = run_folder(Path(run), trained.checkpoint)
    out_dir = Path(out) if out is not None else (root or trained.checkpoint.parent) / "export"
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder")
    stamp = make_stamp(trained)
    module = importlib.import_module(FORMATS[fmt])
    try:
        with staged(out_dir, module.FILES) as folder:
            checked = module.export(trained, folder, stamp)
            written = sorted(out_dir / p.name for p in folder.iterdir())
        exports = found(out_dir)
        atomic_write_text(out_dir / card.FILE, card.render(
            trained, root.resolve() if root is not None else None, stamp, exports))
    except OSError as e:
        raise UserError(f"cannot write the export to {out_dir}: {e.strerror or e}") from None
    seconds = time.perf_counter() - start
    sizes = ", ".join(f"{p.name} ({card.human_size(p.stat().st_size)})" for p in written)
    console.print(f"exported {trained.checkpoint} (epoch {trained.epoch}) as {fmt} in "
                  f"{seconds:.1f} s: {sizes} in {out_dir}", markup=False)
    console.print(checked, markup=False)
    console.print(f"wrote {out_dir / card.FILE}", markup=False)
    return [*written, out_dir / card.FILE]


def run_folder(run: Path, checkpoint: Path) -> Optional[Path]:
    """The run folder the checkpoint belongs to: ``run`` itself, or the folder above the
    ``checkpoints/`` that holds the file (None for a checkpoint kept elsewhere)."""
    from dltrain import runs

    if run.is_dir():
        return run
    if checkpoint.parent.name == runs.CHECKPOINTS:
        return checkpoint.parent.parent
    return None


def make_stamp(trained: TrainedModel) -> Dict[str, Any]:
    """What each export file carries about itself: where it came from and what it takes."""
    import datetime

    import torch

    from dltrain.fingerprint import file_sha256
    from dltrain.version import __version__

    info = trained.info
    return {
        "dltrain": __version__,
        "torch": str(torch.__version__),
        "exported": datetime.datetime.now().isoformat(timespec="seconds"),
        "checkpoint": str(trained.checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(str(trained.checkpoint)),
        "model_sha256": model_digest(trained),
        "epoch": trained.epoch,
        "model": trained.config.model.name,
        "data": info.name,
        "task": info.task,
        "kind": info.kind,
        "input": INPUT,
        "input_shape": ["N", *info.input_shape],
        "output": OUTPUTS[info.task],
        "class_names": list(info.class_names),
    }


def model_digest(trained: TrainedModel) -> str:
    """A sha256 of what the exported model computes: weights, config and data facts. Exports
    with the same digest hold the same model, even from two checkpoint files (best.pt and
    last.pt of the same epoch)."""
    import dataclasses
    import hashlib
    import json

    import torch

    from dltrain import schema

    h = hashlib.sha256()
    h.update(json.dumps([schema.to_dict(trained.config), dataclasses.asdict(trained.info)],
                        sort_keys=True, default=str).encode())
    for name, tensor in sorted(trained.model.state_dict().items()):
        h.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def found(out_dir: Path) -> List[FoundExport]:
    """The exports in ``out_dir``, each with its stamp (None when it has none or cannot be
    read: a file of another program, or an ONNX file without onnx installed)."""
    from dltrain.export.card import FoundExport

    exports = []
    for fmt, name in FORMATS.items():
        module = importlib.import_module(name)
        files = [out_dir / f for f in module.FILES if (out_dir / f).is_file()]
        if not files or files[0].name != module.FILES[0]:
            continue
        try:
            stamp = module.read_stamp(files[0])
        except Exception:  # ImportError, a damaged or foreign file: listed, not described
            stamp = None
        exports.append(FoundExport(fmt, files, stamp))
    return exports
