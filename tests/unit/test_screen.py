"""Issue 12, "a screen worth reading": what a run prints, at any width, and what it leaves in
train.log. The live bar and the tables are rendered on rich consoles of a chosen width; the
runs are the tiny ones of the unit tests."""

from __future__ import annotations

import io
import logging
import re
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.progress import Progress

from dltrain import console as console_module
from dltrain import logs
from dltrain.console import console_for_job, format_value, job_console, titled
from dltrain.loggers import LOG_NAME, console_log
from dltrain.train import progress as progress_module
from dltrain.train.progress import (EpochLine, LiveLine, PlainProgress, RichProgress, epoch_line,
                                    format_row, make_progress, readout_every)
from dltrain.train.report import (files_and_commands, model_table, print_end, print_start,
                                  results_table, summary_line)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROW = {"epoch": 12, "train_loss": 1.8671, "train_acc": 0.6267, "val_loss": 1.2067,
       "val_acc": 0.8290, "lr": 0.001, "epoch_time_s": 0.12, "samples_per_s": 10799.3}
SUMMARY = {"status": "completed", "test_loss": 0.3009, "test_acc": 0.9145, "best_val_loss": 0.2256,
           "best_epoch": 3, "monitor": "val_loss", "mode": "min", "epochs_completed": 3,
           "steps": 60, "parameters": 50826, "seed": 12345, "train_time_s": 0.4,
           "mean_samples_per_s": 12085.04}


def render(renderable, width: int, **kwargs) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, **kwargs)
    console.print(renderable)
    return console.file.getvalue()


def fake_job(epochs=5, batch_size=16, log_every=20, epoch=0, batch=0):
    trainer = SimpleNamespace(epochs=epochs, batch_size=batch_size, log_every=log_every)
    return SimpleNamespace(config=SimpleNamespace(trainer=trainer),
                           state=SimpleNamespace(epoch=epoch, batch=batch, stop_reason=None))


# ---------------------------------------------------------------------------------------------
# one number format
def test_counts_read_the_same_in_the_model_table_and_the_results_table():
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128),
                          nn.ReLU(), nn.Linear(128, 10))
    assert sum(p.numel() for p in model.parameters()) == 50826
    both = render(model_table(model, "mlp on digits"), 120) + render(results_table(SUMMARY), 120)
    assert both.count("50,826") == 3  # total (twice) and parameters
    assert "50826" not in both
    assert "12345" in both and "12,345" not in both  # a seed names, it does not count
    assert "12,085" in both and "12,085.0" not in both  # a rate, whole


@pytest.mark.parametrize("key, value, text", [
    ("parameters", 50826, "50,826"), ("steps", 60, "60"), ("seed", 12345, "12345"),
    ("val_loss", 0.22561, "0.2256"), ("val_loss", 3012.34567, "3,012.3457"), ("lr", 0.001, "0.001"),
    ("train_time_s", 0.4, "0.40"), ("train_time_s", 123.45, "123.5"),
    ("mean_samples_per_s", 12085.04, "12,085"), ("status", "completed", "completed"),
    ("test_loss", float("nan"), "nan"), ("regularization.weight_decay", 1e-5, "1e-05"),
    ("val_loss", 0.0, "0.0000"),
])
def test_format_value(key, value, text):
    assert format_value(value, key) == text


def test_epoch_lines_use_the_same_formats():
    parts = format_row(ROW)
    assert "train_loss 1.8671" in parts and "lr 0.001" in parts and "10,799 samples/s" in parts


# ---------------------------------------------------------------------------------------------
# narrow terminals
@pytest.mark.parametrize("width", [80, 60, 40])
def test_an_epoch_line_breaks_between_metrics_never_inside_one(width):
    text = render(epoch_line(ROW, 30, improved=True), width)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) > 1 and all(len(line) <= width for line in lines), text
    assert lines[0].startswith("epoch 12/30  train_loss 1.8671")
    for part in format_row(ROW):  # each metric whole, on one line
        assert any(part in line for line in lines), f"{part!r} split in\n{text}"
    indent = len("epoch 12/30  ")
    assert all(line.startswith(" " * indent) and line[indent] != " " for line in lines[1:])
    assert lines[-1].endswith("samples/s *")


def test_an_epoch_line_is_one_line_where_the_console_does_not_wrap():
    # a pipe (soft wrap) and train.log keep one line per epoch, whatever COLUMNS says
    text = render(epoch_line(ROW, 30, improved=False), 80, soft_wrap=True)
    assert text.count("\n") == 1 and len(text) > 80
    assert str(epoch_line(ROW, 30, improved=False)) == text.rstrip("\n")


@pytest.mark.parametrize("width", [160, 120, 80, 60])
def test_the_live_line_fits_the_terminal_on_one_line(width):
    fields = {"epoch": "epoch 12/30", "batches": "120/1,000", "loss": "loss 0.2345",
              "metric": "acc 0.9312", "speed": "14,000 samples/s", "eta": "eta 0:03 · run 1:20"}
    text = render(LiveLine(fields, 120, 1000), width, force_terminal=True)
    plain = ANSI.sub("", text)
    assert "\n" not in plain.rstrip("\n") and len(plain.rstrip()) <= width, plain
    assert plain.startswith("epoch 12/30") and "loss 0.2345" in plain
    if width >= 80:
        assert "eta 0:03 · run 1:20" in plain
    if width >= 120:
        assert "samples/s" in plain and "120/1,000" in plain


def test_a_long_stop_reason_does_not_push_the_results_to_the_right():
    reason = "early stopping: no val_loss improvement in 10 epochs (min_delta 0.001, patience 10)"
    text = render(results_table({**SUMMARY, "status": "early_stopped", "reason": reason}), 160)
    table = [line for line in text.splitlines() if line.startswith(("│", "┌", "└"))]
    assert max(map(len, table)) <= 40, text
    assert reason in text.splitlines()  # its own line, after the table
    assert text.splitlines().index(reason) > text.splitlines().index(table[-1])


def test_a_title_wraps_at_the_console_not_at_its_table():
    from rich.table import Table

    table = Table()
    table.add_column("job")
    table.add_row("0")
    title = ("sweep outputs/multirun/2026-11-28/00-36-27-9ffc03 "
             "(2 jobs, sorted by best_val_loss, min)")
    assert render(titled(title, table), 160).splitlines()[0] == title


# ---------------------------------------------------------------------------------------------
# the live readout
@pytest.mark.parametrize("n_batches, log_every, every", [
    (20, 20, 5), (1000, 20, 20), (8, 20, 2), (1, 20, 2), (1000, 1, 2)])
def test_readout_cadence(n_batches, log_every, every):
    assert readout_every(n_batches, log_every) == every


def run_epochs(monkeypatch, step_s, n_batches, epochs=3, log_every=20):
    """Drive a RichProgress through ``epochs`` epochs of ``n_batches`` steps of ``step_s``
    seconds each; returns the steps at which the loss was read and the bar's loss fields."""
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    bar = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=100))
    monkeypatch.setattr(bar.progress, "refresh", lambda: None)
    job = fake_job(epochs=epochs, log_every=log_every)
    reads, shown = [], []
    for epoch in range(epochs):
        job.state.epoch = epoch
        bar.on_epoch_start(job, n_batches)
        for batch in range(1, n_batches + 1):
            now[0] += step_s
            bar.on_step(job, batch, lambda e=epoch, b=batch: reads.append((e, b, now[0])) or
                        {"train_loss": 1.0, "train_acc": 0.5})
            shown.append(bar.progress.tasks[0].fields["loss"])
        bar.on_epoch_end(job, {**ROW, "epoch": epoch + 1}, improved=False)
    bar.close()
    return reads, shown


def test_the_loss_is_read_a_few_times_an_epoch_when_the_clock_allows(monkeypatch):
    # the default data: 20 steps an epoch, here 0.1 s a step (2 s an epoch), log_every=20
    reads, _ = run_epochs(monkeypatch, step_s=0.1, n_batches=20)
    for epoch in range(3):
        steps = [b for e, b, _ in reads if e == epoch]
        assert len(steps) >= 3, reads  # before: at most once, as log_every = the epoch
        assert all(b - a >= 2 for a, b in zip(steps, steps[1:]))  # never every step


def test_the_loss_is_never_read_more_than_a_few_times_a_second(monkeypatch):
    reads, shown = run_epochs(monkeypatch, step_s=0.001, n_batches=400, epochs=5)
    times = [t for _, _, t in reads]
    assert all(b - a >= progress_module.DRAW_S - 1e-9 for a, b in zip(times, times[1:]))
    assert len(reads) <= 2 / progress_module.DRAW_S + 1  # 2 s of steps
    # an epoch too short to read keeps the last loss the bar knew (the previous epoch's)
    first_epoch_end = 400
    assert all(loss for loss in shown[first_epoch_end:]), "the bar went back to 'loss …'"


def test_short_epochs_do_not_redraw_the_bar_each(monkeypatch):
    """The default data: 20 steps in some 30 ms. The bar is redrawn a few times a second, not
    at every epoch start, and the epoch's line still prints each epoch."""
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    bar = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=100))
    redraws = []
    monkeypatch.setattr(bar.progress, "refresh", lambda: redraws.append(now[0]))
    job = fake_job(epochs=60)
    for epoch in range(60):  # 60 epochs of 20 ms: 1.2 s
        job.state.epoch = epoch
        bar.on_epoch_start(job, 20)
        for batch in range(1, 21):
            now[0] += 0.001
            bar.on_step(job, batch, lambda: {"train_loss": 1.0, "train_acc": 0.5})
        bar.on_epoch_end(job, {**ROW, "epoch": epoch + 1}, improved=False)
    bar.close()
    assert len(redraws) <= 1.2 / progress_module.DRAW_S + 1, redraws
    assert bar.console.file.getvalue().count("train_loss") == 60
    assert bar.progress.tasks[0].fields["eta"].startswith("eta 0:00")  # known from past epochs


def test_slow_steps_are_read_after_a_quiet_second_but_never_every_step(monkeypatch):
    reads, _ = run_epochs(monkeypatch, step_s=2.0, n_batches=1000, epochs=1)
    batches = [b for _, b, _ in reads]
    assert batches[:3] == [2, 4, 6]


def test_the_eta_covers_the_whole_run(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    bar = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=120))
    monkeypatch.setattr(bar.progress, "refresh", lambda: None)
    job = fake_job(epochs=10)
    for epoch in range(2):  # 10 steps of 0.1 s: an epoch a second
        job.state.epoch = epoch
        bar.on_epoch_start(job, 10)
        for batch in range(1, 11 if epoch == 0 else 6):
            now[0] += 0.1
            bar.on_step(job, batch, lambda: {"train_loss": 1.0, "train_acc": 0.5})
        if epoch == 0:
            bar.on_epoch_end(job, {**ROW, "epoch": 1}, improved=True)
    eta = bar.progress.tasks[0].fields["eta"]
    # half of epoch 2 done: 0.5 s left in the epoch, 8.5 epochs (8.5 s) in the run
    assert re.fullmatch(r"eta 0:01 · run 0:0[89]", eta), eta
    bar.close()


def test_a_resumed_run_counts_its_eta_from_where_it_resumed(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    bar = RichProgress(Console(file=io.StringIO(), force_terminal=True, width=120))
    monkeypatch.setattr(bar.progress, "refresh", lambda: None)
    job = fake_job(epochs=10, epoch=8, batch=5)  # resumed half-way through epoch 9
    bar.on_epoch_start(job, 10)
    for batch in range(6, 11):
        now[0] += 0.1
        bar.on_step(job, batch, lambda: {"train_loss": 1.0, "train_acc": 0.5})
    assert bar.progress.tasks[0].fields["eta"] == "eta 0:00 · run 0:01"
    bar.close()


def test_progress_auto_is_rich_only_on_a_terminal():
    assert isinstance(make_progress("auto", Console(file=io.StringIO(), force_terminal=True)),
                      RichProgress)
    plain = make_progress("auto", Console(file=io.StringIO()))
    assert type(plain) is PlainProgress
    assert type(make_progress("auto", job_console("job 1", io.StringIO()))) is PlainProgress
    assert make_progress("none", Console(file=io.StringIO(), force_terminal=True)) is None


# ---------------------------------------------------------------------------------------------
# the start and the end of a run
def test_the_end_names_the_folder_its_files_and_the_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "outputs" / "2026-01-01" / "12-00-00-abc123"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/best.pt", "curves.png", "metrics.csv", "summary.json", "train.log"):
        (run / name).write_bytes(b"x")
    out = Console(file=io.StringIO(), width=80, color_system=None)
    print_end(out, run, SUMMARY, "auto")
    text = out.file.getvalue()
    folder = "outputs/2026-01-01/12-00-00-abc123"
    assert "results" in text and "50,826" in text
    assert f"saved in {folder}/" in text
    assert re.search(r"checkpoints/best\.pt +epoch 3, val_loss 0\.2256", text)
    assert "curves.png" in text and "train.log" in text
    for command in (f"dltrain eval {folder}", f"dltrain predict {folder} INPUT",
                    f"dltrain replay {folder}"):
        assert command in text.splitlines()[-3] + text.splitlines()[-2] + text.splitlines()[-1]
    assert not any(line.startswith("run folder: ") for line in text.splitlines())  # said once


def test_without_a_best_checkpoint_the_end_offers_only_replay(tmp_path):
    lines = files_and_commands(tmp_path, {"status": "failed", "reason": "the loss became nan"})
    assert not any("eval" in line or "predict" in line for line in lines)
    assert lines[-1].startswith("replay    dltrain replay ")


def test_progress_none_prints_no_table_and_one_summary_line(tmp_path):
    from torch import nn

    out = Console(file=io.StringIO(), width=80, color_system=None)
    print_start(out, nn.Linear(2, 2), "mlp on digits", ["run folder: x", "device: cpu"], "none")
    print_end(out, tmp_path, {**SUMMARY, "status": "early_stopped", "reason": "early stopping: "
                              "no val_loss improvement in 3 epochs"}, "none")
    lines = out.file.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("early_stopped after 3 epochs: test_loss 0.3009  test_acc 0.9145  "
                               "best_val_loss 0.2256 (epoch 3)")
    failed = summary_line(tmp_path, {"status": "failed", "reason": "the training loss became nan"})
    assert failed.startswith("failed after 0 epochs (the training loss became nan): no results")


def test_a_quiet_run_prints_only_its_summary_line(make_config, tmp_path):
    """trainer.progress=none through run_training: no model table, no epoch lines, no results
    table; one line, which train.log holds too."""
    from dltrain.train.run import run_training

    out = Console(file=io.StringIO(), width=80, color_system=None)
    run_training(make_config(trainer={"epochs": 2, "progress": "none"}), tmp_path, out)
    lines = out.file.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("completed after 2 epochs: test_loss "), lines
    assert (tmp_path / LOG_NAME).read_text().splitlines() == lines


def test_train_log_holds_what_a_run_printed_without_the_bar(make_config, tmp_path, monkeypatch):
    from dltrain.train.run import run_training

    monkeypatch.setattr(progress_module, "DRAW_S", 0.0)  # a redraw at every step
    screen = Console(file=io.StringIO(), width=80, force_terminal=True)
    run_training(make_config(trainer={"epochs": 2, "batch_size": 16, "progress": "rich"}),
                 tmp_path, screen)
    bar = re.compile(r"epoch \d+/2 +━.* eta ")
    assert bar.search(ANSI.sub("", screen.file.getvalue()))  # the live bar was drawn
    log = (tmp_path / LOG_NAME).read_text()
    assert not bar.search(log) and " eta " not in log
    assert not ANSI.search(log) and "\r" not in log
    lines = log.splitlines()
    assert lines[0].startswith("mlp on digits")  # the model table's title
    assert any(line.startswith("run folder: ") for line in lines)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all("val_loss" in line and "samples/s" in line for line in epochs)  # whole lines
    assert "results" in lines and any("dltrain replay" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# train.log
def test_console_log_records_prints_not_the_live_display(tmp_path):
    screen = Console(file=io.StringIO(), force_terminal=True, width=80)
    errors = Console(file=io.StringIO(), force_terminal=True, width=80)
    with console_log(tmp_path, screen, errors):
        screen.print("[bold]model[/] table")
        with Progress(console=screen, transient=True, auto_refresh=False) as progress:
            task = progress.add_task("train", total=10)
            for i in range(10):
                progress.update(task, completed=i)
                progress.refresh()
                if i == 5:
                    screen.print(EpochLine("epoch 1/2", format_row(ROW)))
        errors.print("[bold red]error:[/] ", end="")
        errors.print("boom", markup=False)
    screen.print("after the run")  # unhooked
    assert (tmp_path / LOG_NAME).read_text() == (
        "model table\n" + str(EpochLine("epoch 1/2", format_row(ROW))) + "\nerror: boom\n")
    with console_log(tmp_path, screen):  # a resume appends
        screen.print("resumed")
    assert (tmp_path / LOG_NAME).read_text().endswith("error: boom\nresumed\n")
    assert screen._render_hooks == []


def test_a_quiet_console_writes_no_log(tmp_path):
    with console_log(tmp_path, Console(quiet=True)) as log:
        assert log is None
    assert not (tmp_path / LOG_NAME).exists()


# ---------------------------------------------------------------------------------------------
# parallel sweep jobs
def test_a_parallel_job_prefixes_every_line_with_its_number():
    stream = io.StringIO()
    out = job_console("job 3", stream)
    out.print("run folder: x")
    out.print(epoch_line(ROW, 30, improved=True))
    out.file.write("part of a li")
    assert stream.getvalue().splitlines() == ["[job 3] run folder: x",
                                              "[job 3] " + str(epoch_line(ROW, 30, improved=True))]
    out.file.write("ne\n")
    assert stream.getvalue().splitlines()[-1] == "[job 3] part of a line"
    assert not ANSI.search(stream.getvalue())


def hydra_config(launcher, n_jobs=-1, mode="MULTIRUN", num=3):
    return SimpleNamespace(mode=SimpleNamespace(name=mode), job=SimpleNamespace(num=num),
                           launcher=SimpleNamespace(_target_=launcher, n_jobs=n_jobs))


def test_only_jobs_that_run_side_by_side_get_a_prefix():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert console_for_job(hydra_config(basic)) is console_module.console
    assert console_for_job(hydra_config(joblib, mode="RUN")) is console_module.console
    assert console_for_job(hydra_config(joblib, n_jobs=1)) is console_module.console
    prefixed = console_for_job(hydra_config(joblib))
    assert prefixed is not console_module.console and prefixed.file.prefix == "[job 3] "


# ---------------------------------------------------------------------------------------------
# the libraries' logging
@pytest.fixture
def screens(monkeypatch):
    """dltrain's consoles as strings, and logs.setup() in place; the loggers as they were after."""
    out = Console(file=io.StringIO(), width=200, color_system=None)
    err = Console(file=io.StringIO(), width=200, color_system=None)
    monkeypatch.setattr(console_module, "console", out)
    monkeypatch.setattr(console_module, "err_console", err)
    loggers = [logging.getLogger(name) for name in ("", "hydra", "hydra_plugins", "optuna",
                                                     *logs.QUIET)]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    logging.getLogger().handlers = []  # pytest's own capture handlers stay out of the way
    logs.setup()
    yield out.file, err.file
    for lg, handlers, level, propagate in saved:
        lg.handlers, lg.level, lg.propagate = handlers, level, propagate


def test_hydra_speaks_in_dltrain_style(screens):
    out, err = screens
    launcher = logging.getLogger("hydra._internal.core_plugins.basic_launcher")
    launcher.info("Launching 2 jobs locally")
    launcher.info("\t#0 : optim=sgd")
    logging.getLogger("hydra_plugins.hydra_optuna_sweeper._impl").warning("Failed experiment: x")
    assert out.getvalue().splitlines() == ["hydra: Launching 2 jobs locally",
                                           "hydra: #0 : optim=sgd"]
    assert err.getvalue() == "warning: hydra: Failed experiment: x\n"


def test_other_libraries_say_only_warnings(screens):
    out, err = screens
    logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
    logging.getLogger("somelib").info("chatter")
    logging.getLogger("somelib").warning("careful")
    assert out.getvalue() == ""
    assert err.getvalue() == "warning: somelib: careful\n"


def test_optuna_loses_its_colour_codes_and_timestamps(screens, capsys):
    optuna = pytest.importorskip("optuna")

    out, _ = screens
    logs.take_over_optuna()
    try:
        optuna.logging.get_logger("optuna.study.study").info("A new study created in memory")
        assert out.getvalue() == "optuna: A new study created in memory\n"
        captured = capsys.readouterr()
        assert captured.err == "" and not ANSI.search(captured.out)
    finally:
        optuna.logging.enable_default_handler()


def test_the_logging_callback_takes_over_optuna_before_a_search(screens, monkeypatch):
    pytest.importorskip("optuna")
    called = []
    monkeypatch.setattr(logs, "take_over_optuna", lambda: called.append(1))
    monkeypatch.setattr(logs, "setup", lambda: None)
    config = SimpleNamespace(hydra=SimpleNamespace(sweeper=SimpleNamespace(
        _target_="hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper")))
    logs.LoggingCallback().on_multirun_start(config)
    basic = SimpleNamespace(hydra=SimpleNamespace(sweeper=SimpleNamespace(
        _target_="hydra._internal.core_plugins.basic_sweeper.BasicSweeper")))
    logs.LoggingCallback().on_multirun_start(basic)
    assert called == [1]
