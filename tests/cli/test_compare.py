"""``dltrain compare RUN_OR_SWEEP...`` and a sweep's curves.png: several runs' learning curves in
one picture, each labelled by what differs between the runs' configs, and a table of results.

compare reads files only, so the run folders are written here as dltrain writes them (its own
writers of the saved config, metrics.csv and summary.json; the sweep's record as the sweep
summary's tests write it) and the command runs in this process. One test runs the real command,
in a subprocess, on two real runs trained by the shared fixtures of conftest.py.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from omegaconf import OmegaConf

from dltrain import compare, completion, plots, runs, schema, sweeps
from dltrain.cli import main
from tests.experiments.helpers import assert_png
from tests.unit.test_sweep_summary_status import make_job, make_sweep

from .helpers import QUICK_TIMEOUT_S, cli_env, describe, run_dltrain

# a saved config as .hydra/config.yaml holds it (the keys compare's labels may name)
BASE: Dict[str, Any] = {
    "model": {"name": "mlp", "hidden_sizes": [64]},
    "activation": {"name": "relu"},
    "loss": {"name": "auto"},
    "optim": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08},
    "sched": {"name": "none"},
    "regularization": {"dropout": 0.0, "weight_decay": None},
    "data": {"name": "digits", "task": "auto"},
    "trainer": {"epochs": 3, "batch_size": 64, "device": "auto", "seed": 0, "threads": "auto",
                "progress": "bar", "early_stopping": {"patience": None}},
    "logger": {"csv": {"name": "csv"}},
}
SGD = {"name": "sgd", "lr": 0.001, "momentum": 0.9}
METRICS = {"classification": ("train_loss", "train_acc", "val_loss", "val_acc"),
           "regression": ("train_loss", "train_mae", "train_r2", "val_loss", "val_mae", "val_r2")}


def config(**changes: Any) -> Dict[str, Any]:
    """BASE with ``changes``: dotted keys (``model__hidden_sizes`` for model.hidden_sizes), a
    whole group where the value is a dict."""
    out = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = out
        for parent in parents:
            node = node[parent]
        node[key] = copy.deepcopy(value)
    return out


def history(epochs: int, task: str = "classification", scale: float = 1.0) -> List[Dict[str, float]]:
    return [{"epoch": e, **{k: scale * (1 + 1 / e) for k in METRICS[task]}, "lr": 0.001,
             "epoch_time_s": 0.1, "samples_per_s": 1000.0} for e in range(1, epochs + 1)]


def fake_run(path: Path, epochs: int = 3, status: Optional[str] = "completed",
             task: str = "classification", mode: str = "RUN", reason: str = "",
             **changes: Any) -> Path:
    """A run folder as a dltrain run leaves it: .hydra/ (config, overrides, Hydra's record),
    metrics.csv with ``epochs`` rows (none: none written), and summary.json when ``status``."""
    summary = None
    if status is not None:
        metric = {"classification": {"test_acc": 0.9}, "regression": {"test_mae": 40.0}}[task]
        summary = {"status": status, **({"reason": reason} if reason else {}),
                   **({"test_loss": 0.3, **metric} if status == "completed" else {}),
                   "best_val_loss": 0.25, "best_epoch": epochs, "monitor": "val_loss",
                   "mode": "min", "epochs_completed": epochs, "task": task,
                   "model": config(**changes)["model"]["name"], "train_time_s": 1.5}
    overrides = [f"{k}={v['name']}" if isinstance(v, dict) else
                 f"{k.replace('__', '.')}={compare._text(v)}" for k, v in changes.items()]
    make_job(path, overrides, summary=summary, mode=mode)
    runs.save_config(path, config(**changes))
    if epochs:
        runs.write_metrics(path / runs.METRICS, history(epochs, task))
    return path


def flat(**changes: Any) -> Dict[str, Any]:
    return schema.flatten(config(**changes))


def labelled(*runs_: Path) -> List[str]:
    return [r.label for r in compare.read_runs(compare.collect([str(p) for p in runs_]))]


@pytest.fixture(autouse=True)
def in_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def cli(args: List[str], capsys) -> tuple:
    """``dltrain ARGS`` in this process: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


# ---------------------------------------------------------------------------------------------
# labels
def test_labels_name_the_keys_that_differ_and_nothing_else():
    # device, threads and progress differ too: how a run was carried out, not what it computed
    a = flat(activation={"name": "sigmoid"}, model__hidden_sizes=[64, 64], trainer__device="cuda",
             trainer__threads=4, trainer__progress="none")
    b = flat()
    assert compare.labels([a, b], ["a", "b"]) == [
        "activation=sigmoid model.hidden_sizes=[64,64]", "activation=relu model.hidden_sizes=[64]"]


def test_a_group_option_names_itself_not_the_keys_that_come_with_it():
    sgd, adam = flat(optim=SGD), flat()  # momentum is sgd's, betas and eps adam's
    assert compare.labels([sgd, adam], ["a", "b"]) == ["optim=sgd", "optim=adam"]
    # among the runs that have it, a key that differs is named
    still = flat(optim={**SGD, "momentum": 0.0})
    assert compare.labels([sgd, still, adam], ["a", "b", "c"]) == [
        "optim=sgd optim.momentum=0.9", "optim=sgd optim.momentum=0.0", "optim=adam"]


def test_a_key_that_only_newer_runs_have_does_not_label_them():
    newer = {**flat(), "trainer.ema_decay": None}  # a dltrain that added a key since
    assert compare.labels([flat(optim__lr=0.1), newer], ["a", "b"]) == [
        "optim.lr=0.1", "optim.lr=0.001"]


def test_runs_alike_are_told_apart_by_their_folders():
    assert compare.labels([flat(), flat()], ["a", "b"]) == ["a", "b"]
    assert compare.labels([flat(), flat(), flat(optim__lr=0.1)], ["a", "b", "c"]) == [
        "optim.lr=0.001 (a)", "optim.lr=0.001 (b)", "optim.lr=0.1"]


def test_a_sweeps_jobs_are_named_with_the_sweep_when_alike(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", ["trainer.seed=0"])
    fake_run(sweep / "0", mode="MULTIRUN")
    assert labelled(sweep) == ["sweep/0"]


# ---------------------------------------------------------------------------------------------
# the picture and the table
def test_the_picture_has_one_line_per_run_in_every_panel(tmp_path):
    folders = [fake_run(tmp_path / "a", activation={"name": "sigmoid"}),
               fake_run(tmp_path / "b", epochs=5, trainer__epochs=5),
               fake_run(tmp_path / "c", optim__lr=0.01)]
    read = compare.read_runs(compare.collect([str(f) for f in folders]))
    keys, notes = compare.panels(read)
    assert keys == ["train_loss", "val_loss", "val_acc", "lr"] and notes == []
    fig = plots.compare_figure([(r.label, r.history) for r in read], keys)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["train loss", "val loss", "val accuracy",
                                                 "learning rate"]
    labels = ["activation=sigmoid optim.lr=0.001 trainer.epochs=3",
              "activation=relu optim.lr=0.001 trainer.epochs=5",
              "activation=relu optim.lr=0.01 trainer.epochs=3"]
    for ax in panels:
        assert [line.get_label() for line in ax.get_lines()] == labels
        assert len({line.get_color() for line in ax.get_lines()}) == 3
    assert [len(line.get_xdata()) for line in panels[0].get_lines()] == [3, 5, 3]
    legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend())
    assert [t.get_text() for t in legend.get_texts()] == labels


def test_a_diverged_run_is_drawn_up_to_its_last_finite_value():
    rows = history(3)
    rows[2]["val_loss"] = float("inf")
    fig = plots.compare_figure([("a", rows), ("b", history(3, scale=2.0))], ["val_loss"])
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_ydata()[:2]) == [2.0, 1.5] and str(line.get_ydata()[2]) == "nan"
    assert fig.axes[0].get_ylim()[1] < 10  # not stretched to infinity


def test_compare_writes_the_picture_and_lists_every_run(tmp_path, capsys):
    done = fake_run(tmp_path / "done", activation={"name": "tanh"})
    other = fake_run(tmp_path / "other")
    killed = fake_run(tmp_path / "killed", epochs=0, status=None)  # before its first epoch
    failed = fake_run(tmp_path / "failed", epochs=0, status="failed", reason="loss is nan")
    code, out, err = cli(["compare", "done", "other", "killed", "failed", "--out", "pics"], capsys)
    assert code == 0, err
    assert_png(tmp_path / "pics" / "compare.png")
    assert "compare (4 runs: 2 completed, 1 not started, 1 failed)" in out
    for folder in (done, other, killed, failed):
        assert folder.name in out
    assert "activation=tanh" in out and "activation=relu" in out
    assert "failed: loss is nan" in out
    assert "test_acc" in out and "0.9000" in out and "best_val_loss" in out
    # killed and failed ran other's config: their folders tell them apart
    assert ("not in the picture: activation=relu (killed): not started, no metrics yet; "
            "activation=relu (failed): failed, no metrics yet") in out
    assert out.rstrip().endswith(f"wrote {Path('pics') / 'compare.png'}")


def test_a_running_run_is_drawn_as_far_as_it_got(tmp_path, capsys):
    fake_run(tmp_path / "done")
    running = fake_run(tmp_path / "running", epochs=1, status=None, optim__lr=0.01)
    with runs.locked(running):
        code, out, err = cli(["compare", "done", "running"], capsys)
    assert code == 0, err
    assert "running (process" in out and "not in the picture" not in out
    assert_png(tmp_path / "compare.png")


def test_no_metrics_at_all_is_said_and_draws_nothing(tmp_path, capsys):
    fake_run(tmp_path / "a", epochs=0, status=None)
    code, out, err = cli(["compare", "a"], capsys)
    assert code == 0, err
    assert "no picture: none of the runs has finished an epoch yet" in out
    assert not (tmp_path / "compare.png").exists()


def test_a_sweep_stands_for_its_jobs_beside_other_runs(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", ["activation=relu,tanh,gelu"])
    fake_run(sweep / "0", mode="MULTIRUN", activation={"name": "relu"})
    fake_run(sweep / "1", mode="MULTIRUN", activation={"name": "tanh"})
    # job 2 never started: the sweep's record lists it
    fake_run(tmp_path / "run", activation={"name": "sigmoid"})
    jobs = compare.read_runs(compare.collect(["sweep", "run", "sweep/1"]))  # sweep/1 once
    assert [r.label for r in jobs] == ["activation=relu", "activation=tanh", "activation=gelu",
                                       "activation=sigmoid"]
    assert [r.job["status"] for r in jobs] == ["completed", "completed", "not started",
                                              "completed"]
    code, out, _ = cli(["compare", "sweep", "--out", "pics", "run"], capsys)  # --out in between
    assert code == 0
    assert "not in the picture: activation=gelu: not started, no metrics yet" in out
    assert_png(tmp_path / "pics" / "compare.png")


def test_runs_of_different_tasks_share_the_loss_and_lr_panels(tmp_path, capsys):
    fake_run(tmp_path / "digits")
    fake_run(tmp_path / "diabetes", task="regression", data={"name": "diabetes", "task": "auto"},
             loss={"name": "huber"})
    read = compare.read_runs(compare.collect(["digits", "diabetes"]))
    assert [r.label for r in read] == ["data=digits loss=auto", "data=diabetes loss=huber"]
    keys, notes = compare.panels(read)
    assert keys == ["train_loss", "val_loss", "lr"]
    assert notes == ["runs of different tasks (classification, regression): no panel for "
                     "val_acc, val_mae, val_r2, which only some of them have"]
    code, out, _ = cli(["compare", "digits", "diabetes"], capsys)
    assert code == 0 and notes[0] in out
    assert "test_acc" in out and "test_mae" in out


MODEL_KEYS = {"mlp": ("model__hidden_sizes", [32], [64, 64]), "cnn": ("model__channels", [8], [8, 16])}
RECURRENT_KEY = ("model__hidden_size", 16, 32)


@pytest.mark.parametrize("family", list(schema.GROUPS["model"]))
def test_compare_draws_runs_of_each_model_family(family, tmp_path, capsys):
    key, one, two = MODEL_KEYS.get(family, RECURRENT_KEY)
    model = {"name": family} if family != "mlp" else {"name": "mlp", "hidden_sizes": [64]}
    data = {"name": "digits" if family in MODEL_KEYS else "sine", "task": "auto"}
    fake_run(tmp_path / "a", model=model, data=data, **{key: one})
    fake_run(tmp_path / "b", model=model, data=data, **{key: two})
    code, out, err = cli(["compare", "a", "b"], capsys)
    assert code == 0, err
    assert_png(tmp_path / "compare.png")
    name = key.replace("__", ".")
    assert f"{name}={compare._text(one)}" in out and f"{name}={compare._text(two)}" in out


# ---------------------------------------------------------------------------------------------
# mistakes: one line, exit 2
@pytest.mark.parametrize("args, message", [
    ([], "error: dltrain compare: name the runs or sweeps to compare, e.g. dltrain compare "
         "outputs/multirun/DATE/TIME-ID"),
    (["run", "nowhere"], "error: no such folder: nowhere"),
    (["run/metrics.csv"], "error: run/metrics.csv is a file, not a run or sweep folder"),
    (["run/checkpoints"], "error: run/checkpoints is not a run or sweep folder: it holds no "
                          ".hydra/config.yaml and no multirun.yaml (a run is "
                          "outputs/DATE/TIME-ID, a sweep outputs/multirun/DATE/TIME-ID)"),
    (["."], "error: . is not a run or sweep folder, but holds 1: dltrain compare run"),
    (["run", "--out", "run/metrics.csv"],
     "error: --out run/metrics.csv is a file; name a folder (it is created if needed)"),
    (["run", "--bins", "3"], "error: dltrain compare: unrecognized arguments: --bins 3"),
])
def test_a_mistake_is_one_line(args, message, tmp_path, capsys):
    fake_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints").mkdir()
    before = sorted(tmp_path.rglob("*"))
    code, out, err = cli(["compare", *args], capsys)
    assert code == 2 and err.strip() == message, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


# ---------------------------------------------------------------------------------------------
# after a sweep
def sweep_of_two(tmp_path: Path) -> Path:
    sweep = make_sweep(tmp_path / "sweep", ["optim.lr=0.01,0.001"])
    fake_run(sweep / "0", mode="MULTIRUN", optim__lr=0.01)
    fake_run(sweep / "1", mode="MULTIRUN", optim__lr=0.001)
    return sweep


def end_of_sweep(sweep: Path) -> None:
    sweeps.SweepSummaryCallback().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))


def test_the_end_of_a_sweep_draws_every_jobs_curves(tmp_path, capsys, monkeypatch):
    sweep = sweep_of_two(tmp_path)
    drawn = []
    real = plots.compare_figure
    monkeypatch.setattr(plots, "compare_figure", lambda curves, *a, **k: (
        drawn.append([label for label, _ in curves]) or real(curves, *a, **k)))
    end_of_sweep(sweep)
    assert drawn == [["optim.lr=0.01", "optim.lr=0.001"]]
    assert_png(sweep / "curves.png")
    assert_png(sweep / "sweep.png")
    assert "warning" not in capsys.readouterr().out


def test_a_picture_that_fails_never_fails_the_sweep(tmp_path, capsys, monkeypatch):
    sweep = sweep_of_two(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "plot_compare", broken)
    end_of_sweep(sweep)  # no exception
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if "warning" in line]
    assert warnings == [f"warning: no {sweep / 'curves.png'}: RuntimeError: no fonts"]
    assert (sweep / "summary.csv").is_file() and not (sweep / "curves.png").exists()


# ---------------------------------------------------------------------------------------------
# the command line: help, completion, and the real command
def test_help_lists_compare(capsys):
    code, out, _ = cli(["compare", "--help"], capsys)
    assert code == 0 and out.startswith("usage: dltrain compare")
    assert "RUN_OR_SWEEP" in out and "--out DIR" in out
    code, out, _ = cli(["--help"], capsys)
    assert "dltrain compare RUN_OR_SWEEP... [--out DIR]" in out


def test_compare_completes_any_number_of_runs_and_sweeps(tmp_path):
    fake_run(tmp_path / "outputs" / "run")
    sweep = make_sweep(tmp_path / "outputs" / "multirun" / "sweep", ["trainer.seed=0"])
    fake_run(sweep / "0", mode="MULTIRUN")
    (tmp_path / "docs").mkdir()

    def ask(line: str):
        return completion.complete(*completion.split_line(line), ["compare"])

    assert ask("dltrain compare ") == (["outputs/"], None)  # not docs/
    assert ask("dltrain compare outputs/run outputs/") == (["outputs/multirun/", "outputs/run/"],
                                                           None)
    assert ask("dltrain compare outputs/run --o") == (["--out"], None)
    assert ask("dltrain compare outputs/run --out ") == ([], None)  # the shell's own folders
    assert ask("dltrain compare --out pics outputs/multirun/") == (["outputs/multirun/sweep/"],
                                                                   None)


def test_the_real_command_on_two_real_runs(default_run, regression_run, tmp_path):
    proc = run_dltrain(["compare", str(default_run.run_dir), str(regression_run.run_dir),
                        "--out", "pics"], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 0, describe(proc)
    assert_png(tmp_path / "pics" / "compare.png")
    assert "data=digits" in proc.stdout and "data=diabetes loss=huber" in proc.stdout
    assert "runs of different tasks (classification, regression)" in proc.stdout
    assert f"wrote {Path('pics') / 'compare.png'}" in proc.stdout


HEAVY = """
import sys
from dltrain.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "matplotlib", "dltrain.compare"}))
"""


def test_help_imports_neither_torch_nor_matplotlib(tmp_path):
    proc = subprocess.run([sys.executable, "-c", HEAVY], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 0 and "dltrain compare" in proc.stdout, describe(proc)
    assert proc.stdout.strip().splitlines()[-1] == "[]", describe(proc)
