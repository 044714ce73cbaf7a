"""The metric loggers: one registry entry per declared logger, metrics.csv as the csv logger
keeps it, and the callback that hands a run's events to every logger, however the run ends."""

from __future__ import annotations

import io
import signal

import pytest
from rich.console import Console

from dltrain import runs
from dltrain.checkpoint import load_checkpoint
from dltrain.errors import UserError
from dltrain.loggers import LOGGERS, build_loggers, flatten
from dltrain.loggers.csv_file import CsvLogger
from dltrain.schema import GROUPS
from dltrain.train import run as run_module
from dltrain.train.callbacks import LoggerFanOut
from dltrain.train.loop import Callback, TrainingInterrupted
from dltrain.train.run import run_training


def test_every_declared_logger_is_built_by_the_registry():
    """A logger is declared once in the schema (@option("logger", ...)) and built once here."""
    assert LOGGERS.names() == sorted(GROUPS["logger"])


def test_the_loggers_of_a_config_are_built_by_name(make_config, tmp_path):
    pytest.importorskip("tensorboard")
    from dltrain.loggers.tensorboard import TensorBoardLogger

    config = make_config(logger={"tensorboard": {"name": "tensorboard"}})
    loggers = build_loggers(config.logger, tmp_path)
    assert sorted(type(logger).__name__ for logger in loggers) == ["CsvLogger", "TensorBoardLogger"]
    assert [type(logger) for logger in build_loggers(make_config().logger, tmp_path)] == [CsvLogger]
    assert isinstance(loggers[-1], TensorBoardLogger)


def test_an_unregistered_logger_is_named(tmp_path):
    with pytest.raises(UserError, match="unknown logger 'tensorbord' \\(did you mean 'tensorboard'"):
        build_loggers({"tensorbord": {"name": "tensorbord"}}, tmp_path)


def test_flatten_gives_dotted_keys():
    assert flatten({"optim": {"name": "sgd", "lr": 0.1}, "model": {"hidden_sizes": [8, 4]},
                    "logger": {"csv": {"name": "csv"}}}) == {
        "optim.name": "sgd", "optim.lr": 0.1, "model.hidden_sizes": [8, 4], "logger.csv.name": "csv"}


# ---------------------------------------------------------------------------------------------
# metrics.csv
def row(epoch):
    return {"train_loss": 1.0 / epoch, "val_loss": 2.0 / epoch, "lr": 0.1}


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    logger = CsvLogger(tmp_path)
    logger.start([])
    assert runs.read_metrics(tmp_path / runs.METRICS) == []
    for epoch in (1, 2):
        logger.log_metrics(row(epoch), step=epoch)
        assert runs.read_metrics(tmp_path / runs.METRICS) == \
            [{"epoch": float(e), **row(e)} for e in range(1, epoch + 1)]
    logger.finish("completed")
    assert (tmp_path / runs.METRICS).read_text().splitlines()[0] == "epoch,train_loss,val_loss,lr"


def test_csv_logger_started_on_resume_drops_the_rows_past_the_checkpoint(tmp_path):
    """A crash between an epoch's metrics and its last.pt leaves metrics.csv a row ahead."""
    first = CsvLogger(tmp_path)
    first.start([])
    for epoch in (1, 2, 3):
        first.log_metrics(row(epoch), step=epoch)
    checkpointed = runs.read_metrics(tmp_path / runs.METRICS)[:2]  # last.pt says 2 epochs

    resumed = CsvLogger(tmp_path)
    resumed.start(checkpointed)
    assert runs.read_metrics(tmp_path / runs.METRICS) == checkpointed
    resumed.log_metrics({**row(3), "lr": 0.05}, step=3)
    rows = runs.read_metrics(tmp_path / runs.METRICS)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0] and rows[2]["lr"] == 0.05


# ---------------------------------------------------------------------------------------------
# the fan-out callback
class FakeLogger:
    """Records every call; at each epoch, notes the epoch that last.pt holds at that moment."""

    def __init__(self, run_dir=None):
        self.run_dir = run_dir
        self.calls = []
        self.last_pt_at_epoch = {}

    def start(self, history):
        self.calls.append(("start", len(history)))

    def log_params(self, params):
        self.calls.append(("log_params", params))

    def log_metrics(self, metrics, step):
        self.calls.append(("log_metrics", step, dict(metrics)))
        if self.run_dir is not None:
            last = self.run_dir / runs.CHECKPOINTS / runs.LAST
            self.last_pt_at_epoch[step] = load_checkpoint(last)["epoch"] if last.exists() else 0

    def log_artifact(self, path):
        self.calls.append(("log_artifact", path.name))

    def finish(self, status):
        self.calls.append(("finish", status))

    def names(self):
        return [call[0] for call in self.calls]


def test_fan_out_calls_every_logger_in_order_and_finishes_once(tmp_path):
    fakes = [FakeLogger(), FakeLogger()]
    fan = LoggerFanOut(fakes)
    fan.start([{"epoch": 1, "train_loss": 0.5}], {"optim": {"lr": 0.1}})
    fan.on_epoch_end(None, {"epoch": 2, "train_loss": 0.4, "lr": 0.1}, improved=True)
    (tmp_path / "summary.json").write_text("{}")
    fan.finish("completed", [tmp_path / "summary.json", tmp_path / "missing.png"])
    fan.finish("failed")  # a second finish is ignored
    for fake in fakes:
        assert fake.calls == [
            ("start", 1),
            ("log_params", {"optim.lr": 0.1}),
            ("log_metrics", 2, {"train_loss": 0.4, "lr": 0.1}),  # the epoch is the step
            ("log_artifact", "summary.json"),  # files that do not exist are left out
            ("finish", "completed"),
        ]


def attach(monkeypatch, fake):
    """run_training builds the configured loggers and ``fake`` beside them."""
    real = run_module.build_loggers
    monkeypatch.setattr(run_module, "build_loggers", lambda options, run_dir: [*real(options, run_dir), fake])


def test_a_run_logs_each_epoch_before_its_checkpoint_and_finishes_with_its_files(
        make_config, tmp_path, monkeypatch):
    fake = FakeLogger(tmp_path)
    attach(monkeypatch, fake)
    config = make_config(trainer={"epochs": 2, "batch_size": 256})
    summary = run_training(config, tmp_path, Console(file=io.StringIO()))

    assert fake.names() == ["start", "log_params", "log_metrics", "log_metrics",
                            "log_artifact", "log_artifact", "log_artifact", "log_artifact", "finish"]
    params = fake.calls[1][1]
    assert params["optim.name"] == "sgd" and params["trainer.epochs"] == 2
    assert [call[1] for call in fake.calls[2:4]] == [1, 2]
    # each epoch reached the loggers while last.pt still held the epoch before
    assert fake.last_pt_at_epoch == {1: 0, 2: 1}
    rows = runs.read_metrics(tmp_path / runs.METRICS)
    assert [{"epoch": float(step), **metrics} for _, step, metrics in fake.calls[2:4]] == rows
    assert [call[1] for call in fake.calls[4:8]] == [runs.SUMMARY, runs.RECORD, run_module.CURVES,
                                                     "gradflow.png"]
    assert fake.calls[-1] == ("finish", summary["status"]) == ("finish", "completed")


class SignalAtStep(Callback):
    """SIGTERM to this process after ``step`` steps: the run stops as on a real signal."""

    def __init__(self, step):
        self.step = step

    def on_step(self, job, batch, running):
        if job.state.step == self.step:
            signal.raise_signal(signal.SIGTERM)


class CrashAtEpochEnd(Callback):
    def on_epoch_end(self, job, row, improved):
        raise RuntimeError("boom")


def test_an_interrupted_run_finishes_its_loggers_as_interrupted(make_config, tmp_path, monkeypatch):
    fake = FakeLogger()
    attach(monkeypatch, fake)
    config = make_config(trainer={"epochs": 3, "batch_size": 256})
    with pytest.raises(TrainingInterrupted):
        run_training(config, tmp_path, Console(file=io.StringIO()), callbacks=[SignalAtStep(9)])

    assert fake.names()[-3:] == ["log_artifact", "log_artifact", "finish"]
    assert fake.calls[-1] == ("finish", "interrupted")
    epochs = [call[1] for call in fake.calls if call[0] == "log_metrics"]
    assert epochs == list(range(1, load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.LAST)["epoch"] + 1))
    assert [r["epoch"] for r in runs.read_metrics(tmp_path / runs.METRICS)] == [float(e) for e in epochs]


def test_a_crashed_run_finishes_its_loggers_as_failed(make_config, tmp_path, monkeypatch):
    fake = FakeLogger()
    attach(monkeypatch, fake)
    with pytest.raises(RuntimeError, match="boom"):
        run_training(make_config(), tmp_path, Console(file=io.StringIO()), callbacks=[CrashAtEpochEnd()])
    assert fake.names() == ["start", "log_params", "log_metrics", "finish"]
    assert fake.calls[-1] == ("finish", "failed")


def test_tensorboard_logger_writes_scalars_config_and_curves(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dltrain.loggers.tensorboard import TensorBoardLogger
    from dltrain.plots import plot_curves

    history = [{"epoch": 1, **row(1)}, {"epoch": 2, **row(2)}]
    plot_curves(history, tmp_path / "curves.png", "test")
    first = TensorBoardLogger(tmp_path)
    first.start([])
    first.log_params({"optim.lr": 0.1})
    for epoch in (1, 2, 3):
        first.log_metrics(row(epoch), step=epoch)
    first.finish("interrupted")  # as if epoch 3 never reached last.pt
    resumed = TensorBoardLogger(tmp_path)
    resumed.start(history)  # and stopped again before epoch 3 ended
    resumed.log_artifact(tmp_path / "curves.png")
    resumed.finish("interrupted")

    events = EventAccumulator(str(tmp_path / TensorBoardLogger.FOLDER), size_guidance={"images": 0})
    events.Reload()
    # the resume hid the first process's epoch 3, which last.pt never held (float32 values)
    assert [s.step for s in events.Scalars("loss/val")] == [1, 2]
    assert [s.value for s in events.Scalars("loss/val")] == pytest.approx([2.0, 1.0])
    assert {"config/text_summary", "status/text_summary"} <= set(events.Tags()["tensors"])
    assert [image.step for image in events.Images("curves")] == [2]
