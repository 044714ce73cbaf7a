"""A new user's mistakes, each answered by one line: what is wrong and what is allowed (a
did-you-mean where a name was mistyped), exit status 2, no traceback and no run or sweep folder.

Most run ``dltrain.cli.main`` in this process, in an empty working folder: they fail before Hydra
starts (and before torch is imported, for config mistakes), so a subprocess would only add its
start-up time. The data checks call ``load_data`` directly; one subprocess shows that a data
mistake found inside Hydra's job still leaves no folder behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import numpy as np
import pytest

from dltrain import launch
from dltrain.cli import main
from dltrain.data import load_data
from dltrain.errors import UserError
from dltrain.schema import CSVDataConfig, ImageFolderDataConfig, NpzDataConfig

from .helpers import QUICK_TIMEOUT_S, describe, run_dltrain


@pytest.fixture(autouse=True)
def in_empty_folder(tmp_path, monkeypatch):
    """Each test in its own working folder, with a run id of its own (composing resolves it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(launch.UID_ENV, "mistake")


def refused(args: List[str], capsys, folder: Path, lines: int = 1) -> str:
    """What ``dltrain ARGS`` prints when it refuses them: one line (``lines`` for the list of
    invalid values that validation gives); nothing new in ``folder``."""
    before = sorted(folder.rglob("*"))
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    assert e.value.code == 2, f"exit {e.value.code}\n{out}\n{err}"
    assert "Traceback" not in out + err
    printed = err.strip().splitlines()
    assert len(printed) == lines and printed[0].startswith("error: "), err
    assert sorted(folder.rglob("*")) == before, "a refused command left files behind"
    return "\n".join(printed)


def data_error(cfg) -> str:
    with pytest.raises(UserError) as e:
        load_data(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# mistyped names reach no Hydra dump, and leave no sweep folder holding only multirun.yaml
@pytest.mark.parametrize("args, expected", [
    (["-m", "optim=sgd,adamm"], "unknown optim 'adamm' (did you mean 'adam'?); known: adam, adamw, rmsprop, sgd"),
    (["-m", "optim=choice(sgd,adamm)"], "unknown optim 'adamm' (did you mean 'adam'?)"),
    (["-m", "hydra/launcher=jobllib"], "unknown hydra/launcher 'jobllib' (did you mean 'joblib'?); "
                                       "known: basic, joblib,"),
    (["experiment=addng"], "unknown experiment 'addng' (did you mean 'adding'?); known: adding"),
    (["-m", "experiment=addng"], "unknown experiment 'addng' (did you mean 'adding'?); known: adding"),
    (["-m", "hpo=digits_mlpp"], "unknown hpo 'digits_mlpp' (did you mean 'digits_mlp'?)"),
    (["logger=[csv,tensorbord]"], "unknown logger 'tensorbord' (did you mean 'tensorboard'?)"),
    (["-m", "modle=lstm,gru"], "unknown config group or key 'modle' (did you mean 'model'?)"),
    (["-m", "optim.lrr=1,2"], "optim=adam has no key 'lrr' (did you mean 'lr'?); its keys: name, lr, betas, eps"),
    (["optim=sgd,adam"], "optim=sgd,adam names several values, a sweep: run it with -m"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_mistyped_group_option_or_key_is_caught_before_hydra_runs(args, expected, capsys, tmp_path):
    assert expected in refused(args, capsys, tmp_path)
    assert not (tmp_path / "outputs").exists()


def test_an_invalid_value_of_a_sweep_is_caught_before_hydra_runs(capsys, tmp_path):
    message = refused(["-m", "optim.lr=0.1,-1"], capsys, tmp_path, lines=2)
    assert message == "error: invalid config:\n  optim.lr=-1.0 is not allowed: must be > 0"
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------------
# messages in the user's words, not the schema's class names
@pytest.mark.parametrize("args, expected", [
    (["modle=lstm"], "error: unknown config group or key 'modle' (did you mean 'model'?); known: "
                     "activation, data, debug, experiment, hpo, logger, loss, model, optim, regularization, "
                     "sched, trainer"),
    (["activation.negative_slope=0.2"],
     "error: activation=relu has no key 'negative_slope': it belongs to activation=leaky_relu; "
     "choose that too: dltrain activation=leaky_relu activation.negative_slope=0.2"),
    (["model.hidden_sizes=64"],
     "error: model.hidden_sizes=64 is not allowed: it is a list; write model.hidden_sizes=[64]"),
    (["trainer.early_stopping.patiense=3"],
     "error: trainer.early_stopping has no key 'patiense' (did you mean 'patience'?); "
     "its keys: patience, min_delta"),
    (["trainer.epochs=null"], "error: trainer.epochs=null is not allowed: trainer.epochs needs a value"),
])
def test_a_wrong_key_or_shape_is_said_in_the_users_words(args, expected, capsys, tmp_path):
    message = refused([*args, f"hydra.run.dir={tmp_path / 'run'}"], capsys, tmp_path)
    assert message == expected
    assert "Config" not in message  # TrainConfig, ActivationConfig: the schema's class names


def test_check_help_lists_overrides_and_every_subcommand_has_help(capsys):
    arguments = {
        "check": ["OVERRIDES"],
        "replay": ["RUN", "KEY=VALUE", "--allow-data-change"],
        "resume": ["RUN", "KEY=VALUE", "--allow-changes", "--allow-data-change"],
        "eval": ["RUN_OR_CHECKPOINT", "--split", "--device"],
        "predict": ["RUN", "INPUT", "--out", "--checkpoint", "--device"],
        "export": ["RUN", "--format", "--out", "--checkpoint"],
        "summary": ["SWEEP_DIR"],
    }
    for command, expected in arguments.items():
        for flag in ("--help", "-h"):
            with pytest.raises(SystemExit) as e:
                main([command, flag])
            out, err = capsys.readouterr()
            assert e.value.code == 0, f"dltrain {command} {flag}: {err}"
            assert out.startswith(f"usage: dltrain {command}"), out
            missing = [arg for arg in expected if arg not in out]
            assert not missing, f"dltrain {command} {flag} does not list {missing}:\n{out}"


# ---------------------------------------------------------------------------------------------
# files that are not what the command takes
def test_eval_of_a_file_that_is_not_a_checkpoint(capsys, tmp_path):
    people = write(tmp_path / "people.csv", "height,weight\n170,60\n")
    message = refused(["eval", str(people)], capsys, tmp_path)
    assert message.startswith(f"error: {people} is not a checkpoint")
    assert "dltrain predict RUN" in message and "KeyError" not in message


def test_replay_of_a_crafted_config_runs_nothing_and_names_the_line(capsys, tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    marker = tmp_path / "ran"
    (run / ".hydra" / "config.yaml").write_text(
        f"model:\n  name: mlp\ndata: !!python/object/apply:os.system ['touch {marker}']\n")
    message = refused(["replay", str(run)], capsys, tmp_path)
    assert message.startswith(f"error: {run / '.hydra' / 'config.yaml'}, line 3: not plain YAML")
    assert "!!python/object/apply:os.system" in message
    assert not marker.exists()


def test_a_read_only_working_folder_says_where_to_write(capsys, tmp_path, monkeypatch):
    # a read-only folder, as os.access reports it (root may write to a chmod 555 folder)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if mode & os.W_OK and Path(path).resolve() == tmp_path.resolve()
        else real_access(path, mode, **kw)))
    message = refused(["trainer.epochs=1"], capsys, tmp_path)
    assert message == (f"error: cannot create the run folder under outputs/: {tmp_path} is not "
                       "writable; run dltrain from a writable folder, or give it one: "
                       "hydra.run.dir=/somewhere/writable/run")
    message = refused(["-m", "optim=sgd,adam"], capsys, tmp_path)
    assert "hydra.sweep.dir=/somewhere/writable/sweep" in message


def test_an_npy_file_is_refused_in_one_line_and_leaves_no_run_folder(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((20, 3), dtype=np.float32))
    proc = run_dltrain(["data=npz", "data.path=plain.npy"], tmp_path, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: data.path={tmp_path / 'plain.npy'} is a single NumPy array (20, 3) (.npy), with "
        "no targets to learn; data=npz needs an .npz file with arrays x and y: "
        "np.savez('data.npz', x=x, y=y)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.npy"]


def test_an_npy_file_loaded_directly(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((20, 3), dtype=np.float32))
    cfg = NpzDataConfig(name="npz", path=str(tmp_path / "plain.npy"))
    assert "is a single NumPy array (20, 3) (.npy)" in data_error(cfg)


# ---------------------------------------------------------------------------------------------
# CSV files
PEOPLE = ["height,colour,age,weight"] + [
    f"{150 + i * 0.7:.1f},{'red' if i % 3 else 'blue'},{18 + i % 50},{55 + i * 0.37:.2f}"
    for i in range(60)]


def csv_config(path: Path, target: str, **kw) -> CSVDataConfig:
    return CSVDataConfig(name="csv", path=str(path), target=target, **kw)


def test_a_float_target_forced_into_classes_names_the_real_cause(tmp_path):
    path = write(tmp_path / "people.csv", "\n".join(PEOPLE))
    message = data_error(csv_config(path, "weight", task="classification"))
    assert message.startswith(f"data.task=classification, but column 'weight' of {path} holds "
                              "60 distinct decimal numbers")
    assert "not a set of classes" in message and "data.task=auto" in message
    assert "split is empty" not in message


def test_a_mistyped_target_column_gets_a_did_you_mean(tmp_path):
    path = write(tmp_path / "people.csv", "\n".join(PEOPLE))
    assert data_error(csv_config(path, "wieght")) == (
        f"data.target='wieght': {path} has no such column (did you mean 'weight'?); its columns: "
        "height, colour, age, weight")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_the_delimiter_is_detected(tmp_path, delimiter):
    path = write(tmp_path / "people.csv", "\n".join(line.replace(",", delimiter) for line in PEOPLE))
    data = load_data(csv_config(path, "weight"))
    # height, age and colour one-hot over its two values
    assert data.info.input_shape == (4,) and data.info.task == "regression"


def test_decimal_commas_do_not_fool_the_detection(tmp_path):
    from dltrain.data.csv_file import read_table

    # split at its commas, each row would have five fields against the header's one
    lines = ["a;b;label"] + [f"{i},5;{i * 2},25;{'xy'[i % 2]}" for i in range(30)]
    table = read_table(write(tmp_path / "eu.csv", "\n".join(lines)))
    assert [c.name for c in table.columns] == ["a", "b", "label"]
    assert table.columns[0].values[:2] == ["0,5", "1,5"]


def test_a_wrong_delimiter_says_which_one_to_set(tmp_path):
    path = write(tmp_path / "people.csv", "\n".join(line.replace(",", ";") for line in PEOPLE))
    message = data_error(csv_config(path, "weight", delimiter="comma"))
    assert message.endswith("(one column: is the file separated by semicolons? "
                            "set data.delimiter=semicolon)")
    assert load_data(csv_config(path, "weight", delimiter="semicolon")).info.input_shape == (4,)
    assert load_data(csv_config(path, "weight", delimiter=";")).info.input_shape == (4,)


# ---------------------------------------------------------------------------------------------
# data that would train but teach or measure nothing
def test_a_classification_with_one_class_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "cat").mkdir()
    for i in range(10):
        Image.new("RGB", (4, 4), (i * 20, 0, 0)).save(tmp_path / "cat" / f"{i}.png")
    cfg = ImageFolderDataConfig(name="image_folder", path=str(tmp_path), image_size=4,
                                num_workers=0)
    assert data_error(cfg) == (
        "data=image_folder: the training samples hold a single class ('cat'); a classification "
        "needs at least two (with one, the loss is 0 and the accuracy 1 from the start)")


def test_a_val_split_of_one_sample_is_refused(tmp_path):
    path = write(tmp_path / "small.csv", "a,y\n" + "".join(f"{i},{i * 0.5:.2f}\n" for i in range(8)))
    assert data_error(csv_config(path, "y")) == (
        "data=csv: the val split holds a single sample (train/val/test 6/1/1): one sample's loss "
        "would pick best.pt and stop early by chance; use more samples or a larger "
        "data.val_fraction")
    # a test split of one, with a val split of two
    message = data_error(csv_config(path, "y", val_fraction=0.25))
    assert "the test split holds a single sample (train/val/test 5/2/1)" in message
    assert "would be the test result" in message


def test_a_constant_regression_target_is_refused(tmp_path):
    path = write(tmp_path / "flat.csv", "a,y\n" + "".join(f"{i},3.5\n" for i in range(20)))
    assert data_error(csv_config(path, "y")) == (
        "data=csv: the regression target is the same in every training sample (3.5): there is "
        "nothing to learn; choose a target that varies")
    cfg = NpzDataConfig(name="npz", path=str(tmp_path / "flat.npz"))
    np.savez(cfg.path, x=np.arange(40.0).reshape(20, 2), y=np.full(20, 2.0))
    assert "the regression target is the same in every training sample (2)" in data_error(cfg)


def test_many_tiny_classes_explain_an_empty_split(tmp_path):
    from dltrain.schema import SyntheticDataConfig

    message = data_error(SyntheticDataConfig(name="synthetic", num_samples=10, num_classes=10))
    assert "the val split is empty (train/val/test 10/0/0)" in message
    assert "each of the 10 classes" in message and "needs 4 or more samples" in message


def test_a_damaged_run_record_is_one_line_naming_its_line(tmp_path):
    """run.yaml that is not valid YAML: the file and line, not yaml's multi-line report."""
    from dltrain import runs

    (tmp_path / runs.RECORD).write_text("seed: 0\ncommand: [unclosed\n")
    with pytest.raises(UserError) as e:
        runs.read_record(tmp_path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / runs.RECORD}, line ")
