"""``dltrain predict RUN INPUT``: the command on runs trained by ``run_training``.

The run's own test rows, written to a CSV of their own, give exactly the accuracy ``dltrain
eval`` reports; the output CSV has its documented columns, to a file or to standard output; bad
input is one line and leaves no file behind; a checkpoint without a preprocessing record, or one
that would run code, is refused.

The runs are trained in this process, and most commands run here through the command's entry
point; two run as real processes, for what only a process shows: standard output that carries
the CSV alone, and a bad input's exit status.
"""

from __future__ import annotations

import csv
import io
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from .helpers import (TINY, assert_ok, assert_user_error, dltrain_here, finish, read_csv,
                      read_json, read_yaml, start, train_here)

pytestmark = pytest.mark.slow

CLASSES = ["cat", "dog", "fish"]
assert TINY[0].startswith("model."), "TINY's first override sizes the MLP (the CNN run drops it)"


BAD_INPUTS: Dict[str, tuple] = {
    # name: (CSV text, the one line expected after "error: ")
    "missing_column": ("height,weight\n170,70\n",
                       "{path}, line 1: no column 'colour' in the header; this run's model reads "
                       "the columns height, colour, weight"),
    "unseen_category": ("height,colour,weight\n170,red,70\n170,purple,70\n",
                        "{path}, line 3, column 'colour': 'purple' was not seen in training; "
                        "known: blue, green, red"),
    "bad_cell": ("height,colour,weight\n170,red,heavy\n",
                 "{path}, line 2, column 'weight': 'heavy' is not a number (the column held "
                 "numbers in training)"),
    "missing_value": ("height,colour,weight\n170,red,70\n,red,70\n",
                      "{path}, line 3, column 'height': missing value (an empty cell); dltrain "
                      "does not fill in missing values: fill it in or drop the row"),
}


def people_csv(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Numeric and text features and a learnable class: height, colour, weight, label."""
    rng = np.random.default_rng(seed)
    lines = ["height,colour,weight,label"]
    for i in range(n):
        height, weight = rng.normal(170, 10), rng.normal(70, 5)
        colour = ["red", "green", "blue"][i % 3]
        label = "tall" if height > 170 else "short"
        lines.append(f"{height:.2f},{colour},{weight:.2f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def prices_csv(path: Path, n: int = 90) -> Path:
    lines = ["size,kind,price"] + [f"{i},{'xyz'[i % 3]},{i * 0.5 + 1 + (i % 3)}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def image_folder(root: Path, per_class: int = 8) -> Path:
    """``root/<class>/<i>.png`` in varied sizes, a class colour in each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 120, size=(10 + i % 3 * 3, 12, 3), dtype=np.uint8)
            image[..., c] += 120
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def write_test_rows(run_dir: Path, out: Path) -> int:
    """The run's test split as a CSV of its own: the data rows that ``split_indices`` gave the
    test split, drawn again from the run's own data config. Returns how many."""
    from dltrain.data.csv_file import classes, infer_task, read_table
    from dltrain.data.prepare import split_indices
    from dltrain.schema import load_config

    cfg = load_config(read_yaml(run_dir / ".hydra" / "config.yaml")).data
    table = read_table(Path(cfg.path))
    target = next(c for c in table.columns if c.name == cfg.target)
    stratify = infer_task(table, target) == "classification"
    y = classes(target)[0] if stratify else np.zeros(len(target.values))
    test = split_indices(y, cfg, stratify)[2]
    lines = Path(cfg.path).read_text().splitlines()  # no blank lines: data row i is line i + 2
    out.write_text("\n".join([lines[0], *(lines[i + 1] for i in test)]) + "\n")
    return len(test)


def printed(stdout: str, name: str) -> str:
    """A metric's value in a table that predict or eval printed."""
    found = re.search(rf"│ {name}\s+│\s+(-?[0-9.]+)", stdout)
    assert found, f"no {name} in\n{stdout}"
    return found.group(1)


@dataclass
class Runs:
    cwd: Path
    people: Path  # a classification run on a CSV (3 epochs)
    prices: Path  # a regression run on a CSV
    images: Path  # an image_folder run
    image_dir: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    cwd = tmp_path_factory.mktemp("predict")
    data = people_csv(cwd / "people.csv")
    prices = prices_csv(cwd / "prices.csv")
    images = image_folder(cwd / "imgs")
    found = Runs(cwd, cwd / "people", cwd / "prices", cwd / "images", images)
    train_here([*TINY, "data=csv", f"data.path={data}", "data.target=label", "trainer.epochs=3"],
               found.people)
    train_here([*TINY, "data=csv", f"data.path={prices}", "data.target=price", "trainer.epochs=2"],
               found.prices)
    train_here([*TINY[1:], "data=image_folder", f"data.path={images}", "data.image_size=8",
                "data.num_workers=0", "model=cnn", "model.channels=[4]", "model.hidden_size=8",
                "trainer.epochs=2"], found.images)
    return found


@dataclass
class Predictions:
    to_file: subprocess.CompletedProcess
    to_stdout: subprocess.CompletedProcess  # a real process: its stdout is a pipe
    eval: subprocess.CompletedProcess
    regression: subprocess.CompletedProcess
    regression_eval: subprocess.CompletedProcess
    images: subprocess.CompletedProcess
    unseen: subprocess.CompletedProcess  # a real process: a CSV with a colour not seen in training
    test_csv: Path
    rows: int
    out: Path


@pytest.fixture(scope="module")
def predictions(runs: Runs) -> Predictions:
    cwd = runs.cwd
    test_csv, prices_test = cwd / "test.csv", cwd / "prices_test.csv"
    rows = write_test_rows(runs.people, test_csv)
    (cwd / "unseen.csv").write_text(BAD_INPUTS["unseen_category"][0])
    write_test_rows(runs.prices, prices_test)
    # the real processes start first and import torch while the rest runs here
    procs = [start(args, cwd) for args in (
        ["predict", str(runs.people), str(test_csv), "--batch-size", "7"],
        ["predict", str(runs.people), "unseen.csv", "--out", "unseen_preds.csv"],
    )]
    try:
        to_file, eval_, regression, regression_eval, images = (dltrain_here(args, cwd) for args in (
            ["predict", str(runs.people), str(test_csv), "--out", "preds.csv"],
            ["eval", str(runs.people)],
            ["predict", str(runs.prices), str(prices_test), "--out", "prices_preds.csv"],
            ["eval", str(runs.prices)],
            ["predict", str(runs.images), str(runs.image_dir), "--out", "image_preds.csv"],
        ))
    finally:
        to_stdout, unseen = (finish(p) for p in procs)
    return Predictions(to_file=to_file, to_stdout=to_stdout, eval=eval_, regression=regression,
                       regression_eval=regression_eval, images=images, unseen=unseen,
                       test_csv=test_csv, rows=rows, out=cwd / "preds.csv")


def test_predict_on_the_test_rows_gives_eval_s_accuracy(runs, predictions):
    assert_ok(predictions.to_file)
    assert_ok(predictions.eval)
    result = read_json(runs.people / "eval_test.json")
    assert result["samples"] == predictions.rows
    stdout = predictions.to_file.stdout
    assert printed(stdout, "acc") == f"{result['test_acc']:.4f}"
    assert printed(stdout, "macro_f1") == f"{result['macro_f1']:.4f}"
    assert math.isclose(float(printed(stdout, "loss")), result["test_loss"], abs_tol=2e-4)
    assert f"test.csv: {predictions.rows} inputs with true targets (best.pt, epoch" in stdout
    assert "confusion matrix (rows: true, columns: predicted)" in stdout
    # exactly, from the predictions themselves
    truth = [row["label"] for row in read_csv(predictions.test_csv)]
    predicted = [row["prediction"] for row in read_csv(predictions.out)]
    correct = sum(t == p for t, p in zip(truth, predicted))
    assert correct / len(truth) == result["test_acc"]
    assert re.search(rf"wrote {predictions.rows} predictions to \S*preds.csv", stdout)


def test_the_predictions_csv(runs, predictions):
    rows = read_csv(predictions.out)
    assert list(rows[0]) == ["row", "prediction", "p_short", "p_tall"]
    assert [r["row"] for r in rows] == [str(i) for i in range(1, predictions.rows + 1)]
    for r in rows:
        p = {"short": float(r["p_short"]), "tall": float(r["p_tall"])}
        assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-6)
        assert r["prediction"] == max(p, key=p.get)
    assert not list(runs.cwd.glob(".preds.csv.*")), "the temporary file is gone"
    text = predictions.out.read_text()
    assert text.endswith("\n") and "\r" not in text


def test_standard_output_carries_the_same_csv_alone(predictions):
    proc = assert_ok(predictions.to_stdout)
    from_file = read_csv(predictions.out)
    from_stdout = list(csv.DictReader(io.StringIO(proc.stdout)))
    # the same rows; batches of another size may change the last digit of a probability
    assert [(r["row"], r["prediction"]) for r in from_stdout] == \
        [(r["row"], r["prediction"]) for r in from_file]
    for a, b in zip(from_stdout, from_file):
        assert math.isclose(float(a["p_tall"]), float(b["p_tall"]), abs_tol=1e-6)
    assert f"{predictions.rows} predictions written to standard output" in proc.stderr
    assert "acc" in proc.stderr  # the metrics go to standard error too


def test_regression_metrics_match_eval(runs, predictions):
    assert_ok(predictions.regression)
    assert_ok(predictions.regression_eval)
    result = read_json(runs.prices / "eval_test.json")
    stdout = predictions.regression.stdout
    for name in ("loss", "mae", "r2", "mse"):
        assert math.isclose(float(printed(stdout, name)), result[f"test_{name}"], rel_tol=1e-3,
                            abs_tol=1e-4), name
    rows = read_csv(runs.cwd / "prices_preds.csv")
    assert list(rows[0]) == ["row", "prediction"]
    assert len(rows) == result["samples"]
    assert all(math.isfinite(float(r["prediction"])) for r in rows)


def test_an_image_folder_with_class_folders(runs, predictions):
    proc = assert_ok(predictions.images)
    rows = read_csv(runs.cwd / "image_preds.csv")
    assert list(rows[0]) == ["file", "prediction", *(f"p_{c}" for c in CLASSES)]
    assert [r["file"] for r in rows] == [f"{c}/{i}.png" for c in CLASSES for i in range(8)]
    correct = sum(r["file"].split("/")[0] == r["prediction"] for r in rows)
    assert printed(proc.stdout, "acc") == f"{correct / len(rows):.4f}"
    assert f"imgs: {len(rows)} inputs with true targets" in proc.stdout


# ---------------------------------------------------------------------------------------------
# what predict refuses
def crafted_checkpoints(runs: Runs, folder: Path) -> Dict[str, Path]:
    """A copy of best.pt without its preprocessing record (as checkpoints were before), and
    a checkpoint that would run code when unpickled."""
    import torch

    folder.mkdir()
    old = torch.load(runs.people / "checkpoints" / "best.pt", weights_only=True)
    del old["data_info"]["preprocess"]
    torch.save(old, folder / "old.pt")
    torch.save({**old, "hook": RunsCode(folder / "MARKER")}, folder / "evil.pt")
    return {"old": folder / "old.pt", "evil": folder / "evil.pt"}


class RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os
        import shlex

        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def cli(args: List[str], capsys) -> tuple:
    """``dltrain ARGS`` in this process, through the real entry point (cli.main, which turns a
    UserError into one line on stderr and exit 2): (exit code, stdout, stderr). A subprocess
    would spend seconds importing torch for each of these one-line errors."""
    from dltrain.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_file(runs, tmp_path, monkeypatch, capsys, name):
    text, expected = BAD_INPUTS[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{name}.csv").write_text(text)
    code, out, err = cli(["predict", str(runs.people), f"{name}.csv", "--out", "out.csv"], capsys)
    assert (code, out, err) == (2, "", f"error: {expected.format(path=name + '.csv')}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.csv"], "no file left behind"
    # an existing file is replaced only by a complete one
    (tmp_path / "out.csv").write_text("keep me\n")
    assert cli(["predict", str(runs.people), f"{name}.csv", "--out", "out.csv"], capsys)[0] == 2
    assert (tmp_path / "out.csv").read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{name}.csv", "out.csv"])


def test_a_bad_input_in_a_real_process(predictions):
    """The one-line error from the command itself: exit 2, no traceback, no file."""
    assert_user_error(predictions.unseen, "unseen.csv, line 3, column 'colour': 'purple' was "
                                          "not seen in training; known: blue, green, red")
    assert len(predictions.unseen.stderr.splitlines()) == 1
    assert not (predictions.out.parent / "unseen_preds.csv").exists()


def test_what_predict_refuses(runs, tmp_path, monkeypatch, capsys):
    checkpoints = crafted_checkpoints(runs, tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    data = str(runs.cwd / "people.csv")

    def error(args: List[str]) -> str:
        code, out, err = cli(args, capsys)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, (code, out, err)
        return err

    assert f"{checkpoints['old']} was written before dltrain saved the preprocessing of its data" \
        in error(["predict", str(runs.people), data, "--checkpoint", str(checkpoints["old"])])
    refusal = f"error: refusing to load {checkpoints['evil']}: it holds objects other than tensors"
    assert error(["predict", str(runs.people), data, "--checkpoint",
                  str(checkpoints["evil"])]).startswith(refusal)
    assert error(["predict", str(checkpoints["evil"]), data]).startswith(refusal)
    assert error(["eval", str(checkpoints["evil"])]).startswith(refusal)
    assert not (tmp_path / "ckpt" / "MARKER").exists(), "loading the checkpoint ran its code"
    assert "is a folder of images, but this run's model was not trained on image files " \
           "(data=csv); it takes a CSV file with the columns height, colour, weight" \
        in error(["predict", str(runs.people), str(runs.image_dir)])
    assert error(["predict", "nothing", data]) == "error: no run folder or checkpoint at nothing\n"
    assert error(["predict", str(runs.people), data, "--out", str(tmp_path)]) == (
        f"error: --out {tmp_path} is a folder; give the name of the CSV file to write\n")
    (tmp_path / "mine.csv").write_text(BAD_INPUTS["bad_cell"][0])
    assert error(["predict", str(runs.people), "mine.csv", "--out", "./mine.csv"]) == (
        "error: --out ./mine.csv is the input file: write the predictions to another file\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "mine.csv"], \
        "no file left behind"
