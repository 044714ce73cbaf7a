"""``dltrain predict RUN INPUT``: a run's model on new data, a CSV of predictions out.

The input is read in batches (:func:`dltrain.predict.inputs.read_batches`), each batch goes
through the trained model, and its rows are written at once (:mod:`dltrain.predict.output`),
so memory does not grow with the input. When the input holds the true targets, the metrics
``dltrain eval`` reports are summed along the way (counts and sums, never the predictions
themselves) and printed at the end, named as eval names them without the split: ``loss``,
``acc`` and ``macro_f1``, per-class precision, recall and F1, and the confusion matrix; or
``loss``, ``mae``, ``r2`` and ``mse`` (MAE and MSE in the target's own units).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Dict, Optional

import numpy as np
from rich.console import Console

from dltrain.errors import UserError
from dltrain.evaluate import confusion_report, print_tables
from dltrain.predict.inputs import read_batches, unlabelled_folders
from dltrain.predict.model import TrainedModel, load_run
from dltrain.predict.output import PredictionWriter, write_csv


class TargetMetrics:
    """Running sums of what eval reports, from outputs (probabilities, or values in the
    target's units) and true targets, batch by batch."""

    def __init__(self, model: TrainedModel) -> None:
        info = model.info
        self.classification = info.task == "classification"
        self.n = 0
        self.loss = 0.0
        if self.classification:
            k = info.num_outputs
            self.names = list(info.class_names) or [str(i) for i in range(k)]
            self.confusion = np.zeros((k, k), dtype=np.int64)
        else:
            import torch

            from dltrain.losses import build_eval_loss

            k = info.num_outputs
            # the loss eval reports: the run's loss on standardized targets
            self.criterion = build_eval_loss(model.config.loss, info.task)
            self.criterion.reduction = "sum"
            self.mean = torch.tensor(info.target_mean or (0.0,) * k)
            self.std = torch.tensor(info.target_std or (1.0,) * k)
            self.abs_err = np.zeros(k)
            self.sq_err = np.zeros(k)
            self.y_sum = np.zeros(k)
            self.y_sq = np.zeros(k)

    def add(self, outputs: np.ndarray, y: np.ndarray) -> None:
        self.n += len(y)
        if self.classification:
            p = outputs[np.arange(len(y)), y].astype(np.float64)
            # cross-entropy of the probabilities; a probability that underflowed to 0 counts as
            # the smallest float32 (eval, from the logits, can report a larger loss for it)
            self.loss -= np.log(np.maximum(p, np.finfo(np.float32).tiny)).sum()
            np.add.at(self.confusion, (y, outputs.argmax(axis=1)), 1)
            return
        import torch

        out, target = torch.from_numpy(outputs), torch.from_numpy(y)
        self.loss += self.criterion((out - self.mean) / self.std,
                                    (target - self.mean) / self.std).item()
        err = outputs.astype(np.float64) - y
        self.abs_err += np.abs(err).sum(axis=0)
        self.sq_err += np.square(err).sum(axis=0)
        self.y_sum += y.sum(axis=0, dtype=np.float64)
        self.y_sq += np.square(y, dtype=np.float64).sum(axis=0)

    def result(self) -> Dict[str, Any]:
        n = max(self.n, 1)
        if self.classification:
            return {"loss": self.loss / n, "acc": float(np.trace(self.confusion)) / n,
                    **confusion_report(self.confusion, list(self.names)), "samples": self.n}
        k = len(self.sq_err)
        total = self.y_sq - np.square(self.y_sum) / n
        return {"loss": self.loss / (n * k), "mae": float(self.abs_err.sum()) / (n * k),
                "r2": float(np.mean(1 - self.sq_err / np.maximum(total, 1e-12))),
                "mse": float(self.sq_err.sum()) / (n * k), "samples": self.n}


def run_predict(run: str, input: Any, *, out: Optional[str], checkpoint: str = "best",
                batch_size: int = 1024, device: str = "cpu",
                console: Optional[Console] = None) -> Dict[str, Any]:
    """Predict ``input`` with ``run``'s model; write the CSV to ``out`` (None: standard
    output) and print the metrics when the input holds the true targets. Returns the number of
    rows written (``rows``), the file (``out``) and the metrics, if any (``metrics``)."""
    from dltrain.console import err_console

    to_stdout = out is None or out == "-"
    if not to_stdout and isinstance(input, (str, Path)) and str(input) != "-" \
            and Path(out).expanduser().resolve() == Path(input).expanduser().resolve():
        raise UserError(f"--out {out} is the input file: write the predictions to another file")
    # standard output carries the CSV alone: everything else goes to standard error
    console = err_console if to_stdout or console is None else console
    model = load_run(run, checkpoint, device, option="--device")
    metrics = TargetMetrics(model)
    writer: Optional[PredictionWriter] = None

    def fill(stream: IO[str]) -> None:
        nonlocal writer
        writer = PredictionWriter(stream, model.info)
        for batch in read_batches(input, model.info, batch_size):
            outputs = model.outputs(batch.x)
            writer.write(batch.ids, batch.id_name, outputs)
            if batch.y is not None:
                metrics.add(outputs, batch.y)

    path = write_csv(out, fill)
    rows = writer.rows if writer is not None else 0
    result: Dict[str, Any] = {"rows": rows, "out": str(path) if path else None}
    if metrics.n:
        result["metrics"] = metrics.result()
        print_metrics(result["metrics"], f"{_name(input)}: {metrics.n} inputs with true "
                      f"targets ({_checkpoint(model)})", console)
    elif isinstance(input, (str, Path)) and Path(input).is_dir():
        strangers = unlabelled_folders(input, model.info)
        if strangers:
            these = (f"the folder {strangers[0]} is not a class" if len(strangers) == 1 else
                     f"the folders {', '.join(strangers)} are not classes")
            console.print(f"no metrics: {these} of this run ({', '.join(model.info.class_names)})",
                          markup=False)
    plural = "" if rows == 1 else "s"
    if path is None:
        console.print(f"{rows} prediction{plural} written to standard output", markup=False)
    else:
        console.print(f"wrote {rows} prediction{plural} to {path}", markup=False)
    return result


def _name(input: Any) -> str:
    if isinstance(input, (str, Path)):
        return "standard input" if str(input) == "-" else str(input)
    return "the inputs"


def _checkpoint(model: TrainedModel) -> str:
    epoch = f", epoch {model.epoch}" if model.epoch is not None else ""
    return f"{model.checkpoint.name}{epoch}"


def print_metrics(result: Dict[str, Any], title: str, console: Console) -> None:
    """The tables eval prints, under ``title``."""
    keys = [key for key in ("loss", "acc", "macro_f1", "mae", "r2", "mse") if key in result]
    print_tables(result, title, keys, console)
