"""``dltrain eval``: a saved model on its test (or validation) split, in detail.

Classification: accuracy, per-class precision / recall / F1 and the confusion matrix.
Regression: MSE, MAE and R² (MSE and MAE in the target's own units).
The metric names match summary.json (``test_acc``, ``test_loss``, ... or ``val_...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dltrain import runs, schema
from dltrain.checkpoint import load_checkpoint
from dltrain.data.base import DataSplits
from dltrain.data.batching import iterate
from dltrain.errors import UserError
from dltrain.rerun import check_data
from dltrain.train.loop import evaluate


def eval_file(split: str) -> str:
    """One file per split: evaluating val never overwrites the test result."""
    return f"eval_{split}.json"



def locate(target: str) -> Tuple[Path, Path]:
    """(checkpoint, run folder) of a run folder (its best.pt) or of a checkpoint file."""
    path = Path(target)
    if path.is_dir():
        ckpt = path / runs.CHECKPOINTS / runs.BEST
        if not ckpt.is_file():
            raise UserError(f"{path} has no {runs.CHECKPOINTS}/{runs.BEST}: is it a finished run folder?")
        return ckpt, path
    if path.is_file():
        if not looks_like_checkpoint(path):
            raise UserError(f"{path} is not a checkpoint: dltrain eval takes a run folder or a "
                            f"checkpoint file (RUN/{runs.CHECKPOINTS}/{runs.BEST}); to run a "
                            f"model on new data: dltrain predict RUN {path}")
        root = path.parent.parent if path.parent.name == runs.CHECKPOINTS else path.parent
        return path, root
    raise UserError(f"no run folder or checkpoint at {path}")


# the first bytes of what torch.save writes: a zip archive, or (torch's legacy format) a pickle
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")


def looks_like_checkpoint(path: Path) -> bool:
    """Whether ``path`` begins as a torch.save file does (a damaged one still does, and gets
    load_checkpoint's own message): a CSV or an image is named for what it is instead."""
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(CHECKPOINT_MAGIC)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


@dataclass
class EvalJob:
    """A model with its data and its evaluation loss: what :func:`evaluate` needs, without the
    optimizer, schedule or seeding of a training job."""

    config: schema.TrainConfig
    model: torch.nn.Module
    eval_criterion: torch.nn.Module
    data: DataSplits
    device: torch.device


def build_eval_job(config: schema.TrainConfig, device_option: str = "trainer.device") -> EvalJob:
    """The data and the model of ``config`` on its device, built as training builds them."""
    from dltrain.data import load_data
    from dltrain.device import resolve_device, set_threads
    from dltrain.losses import build_eval_loss
    from dltrain.models import build_model

    device = resolve_device(config.trainer.device, option=device_option)
    set_threads(config.trainer.threads)
    data = load_data(config.data)
    model = build_model(config, data.info).to(device)
    return EvalJob(config, model, build_eval_loss(config.loss, data.info.task).to(device),
                   data.to(device), device)


@torch.inference_mode()
def predictions(job: EvalJob, split) -> Tuple[torch.Tensor, torch.Tensor]:
    job.model.eval()
    outs, ys = [], []
    for x, y in iterate(split, job.config.trainer.eval_batch_size, shuffle=False):
        outs.append(job.model(x).float())
        ys.append(y)
    return torch.cat(outs).cpu(), torch.cat(ys).cpu()


def classification_report(out: torch.Tensor, y: torch.Tensor, names) -> Dict[str, Any]:
    k = out.shape[1]
    pred = out.argmax(1)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return confusion_report(confusion.numpy(), list(names) or [str(i) for i in range(k)])


def confusion_report(confusion: np.ndarray, names: List[str]) -> Dict[str, Any]:
    """Per-class precision, recall and F1, macro F1, from a confusion matrix (rows: true)."""
    tp = np.diag(confusion).astype(np.float64)
    precision = tp / np.maximum(confusion.sum(axis=0), 1)
    recall = tp / np.maximum(confusion.sum(axis=1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(confusion[i].sum())}
                 for i, name in enumerate(names)}
    return {"per_class": per_class, "macro_f1": float(f1.mean()),
            "confusion_matrix": confusion.tolist(), "class_names": list(names)}


def run_eval(target: str, split: str, device: str, console: Console, *,
             allow_data_change: bool = False) -> Dict[str, Any]:
    if not schema.DEVICE_PATTERN.match(device):
        raise UserError(f"--device {device} is not allowed: auto, cpu, cuda, cuda:N or mps")
    ckpt_path, root = locate(target)
    ckpt = load_checkpoint(ckpt_path)
    if "config" not in ckpt or "model" not in ckpt:
        raise UserError(f"{ckpt_path} is not a dltrain checkpoint (no config or model in it)")
    config = schema.load_config(ckpt["config"])
    config.trainer.device = device
    data_changes = check_data(root, config, allow_data_change)
    job = build_eval_job(config, device_option="--device")
    job.model.load_state_dict(ckpt["model"])
    data = job.data.test if split == "test" else job.data.val
    result: Dict[str, Any] = evaluate(job, data, split)
    out, y = predictions(job, data)
    info = job.data.info
    if info.task == "classification":
        result.update(classification_report(out, y, info.class_names))
    else:
        std = torch.tensor(info.target_std or (1.0,) * info.num_outputs)
        result[f"{split}_mse"] = ((out - y) * std).square().mean().item()
    result.update({"checkpoint": str(ckpt_path), "epoch": ckpt.get("epoch"), "samples": len(y)})
    if data_changes:
        result["data_changes_allowed"] = data_changes
    path = root / eval_file(split)
    runs.write_json(path, result)
    print_report(result, split, console)
    console.print(f"wrote {path}", markup=False)
    return result


def print_report(result: Dict[str, Any], split: str, console: Console) -> None:
    keys = [key for key in result if key.startswith(f"{split}_") or key == "macro_f1"]
    print_tables(result, f"{split} split ({result['samples']} samples, epoch {result['epoch']})",
                 keys, console)


def print_tables(result: Dict[str, Any], title: str, keys: List[str], console: Console) -> None:
    """The metrics named by ``keys`` under ``title``; for a classification, the per-class
    scores and the confusion matrix too (what eval and predict print)."""
    table = Table(title=title, title_justify="left", show_header=False)
    for key in keys:
        table.add_row(key, f"{result[key]:.4f}")
    console.print(table)
    if "per_class" not in result:
        return
    per = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "f1", "support"):
        per.add_column(col, justify="right")
    for name, m in result["per_class"].items():
        per.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(per)
    names = result["class_names"]
    cm = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    cm.add_column("")
    for name in names:
        cm.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(names, result["confusion_matrix"])):
        cm.add_row(name, *[f"[bold]{v}[/]" if j == i else (str(v) if v else "·")
                           for j, v in enumerate(row)])
    console.print(cm)
