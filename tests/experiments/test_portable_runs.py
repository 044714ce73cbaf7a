"""Issue 7 items 10 and 11: a run folder is enough, from anywhere, and only with its own data.

A run on a CSV file given by a relative path is evaluated, replayed and resumed from another
directory; after rows are appended to the file, each of those commands stops with one line naming
the file, unless --allow-data-change, which is recorded.

The runs are trained in this process, from their home folder, and eval and resume run here
through the command's entry point; replays go through Hydra's command line, in subprocesses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import (TINY, assert_ok, assert_user_error, describe, dltrain_here, finish,
                      new_run_folders, read_json, read_yaml, start, train_here)

pytestmark = pytest.mark.slow


def people_csv(path: Path, n: int) -> None:
    lines = ["height,weight,label"] + [f"{150 + i % 40},{50 + (i * 7) % 30},{'tall' if i % 40 > 20 else 'short'}"
                                       for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def csv_runs(tmp_path_factory):
    """Two runs on CSV files given by a relative path: one is moved around, the other has its
    data changed."""
    homes = [tmp_path_factory.mktemp(name) for name in ("portable", "drifting")]
    for home in homes:
        people_csv(home / "people.csv", 200)
        train_here([*TINY, "data=csv", "data.path=people.csv", "data.target=label",
                    "trainer.epochs=1"], home / "run", cwd=home)
    return [home / "run" for home in homes]


@pytest.fixture(scope="module")
def csv_run(csv_runs):
    return csv_runs[0]


def test_eval_replay_and_resume_work_from_another_directory(csv_run, tmp_path):
    """Item 10: the path is resolved when the run starts; run.yaml keeps it as typed."""
    record = read_yaml(csv_run / "run.yaml")
    assert record["paths"] == {"data.path": "people.csv"}
    saved = read_yaml(csv_run / ".hydra" / "config.yaml")["data"]["path"]
    assert saved == str(csv_run.parent / "people.csv")
    copy = tmp_path / "copy"
    shutil.copytree(csv_run, copy)
    elsewhere, failing = tmp_path / "elsewhere", tmp_path / "failing"
    elsewhere.mkdir()
    failing.mkdir()
    procs = [start(args, cwd) for args, cwd in (
        (["replay", str(csv_run)], elsewhere),
        (["replay", str(csv_run), "data.path=nothere.csv"], failing),
    )]
    try:
        ev, resume = (dltrain_here(args, elsewhere) for args in (
            ["eval", str(csv_run)], ["resume", str(copy), "trainer.epochs=2"]))
    finally:
        replay, missing = (finish(p) for p in procs)
    for proc in (ev, replay, resume):
        assert_ok(proc)
    assert_user_error(missing, "nothere.csv")
    assert list(failing.iterdir()) == []  # no empty outputs/DATE/ left behind
    assert "resuming after epoch 1" in resume.stdout, describe(resume)
    assert read_json(copy / "summary.json")["epochs_completed"] == 2
    assert len(new_run_folders(elsewhere)) == 1  # the replay's own folder, nothing else


def test_changed_data_stops_eval_replay_and_resume_unless_allowed(csv_runs, tmp_path):
    """Item 11: appended rows are named; --allow-data-change goes on and is recorded."""
    run = csv_runs[1]
    data = run.parent / "people.csv"
    people_csv(data, 350)  # 150 rows more than the run trained on
    replay_cwd = tmp_path / "replay"
    replay_cwd.mkdir()
    procs = [start(args, cwd) for args, cwd in (
        (["replay", str(run)], tmp_path),
        (["replay", str(run), "--allow-data-change"], replay_cwd),
    )]
    try:
        ev, allowed, resume = (dltrain_here(args, tmp_path) for args in (
            ["eval", str(run)],
            ["eval", str(run), "--split", "val", "--allow-data-change"],
            ["resume", str(run), "trainer.epochs=2"],
        ))
    finally:
        replay, allowed_replay = (finish(p) for p in procs)
    for proc in (ev, resume, replay):
        assert_user_error(proc, f"{data} changed", "--allow-data-change")
        assert len(proc.stderr.strip().splitlines()) == 1, describe(proc)
    assert_ok(allowed)
    result = read_json(run / "eval_val.json")
    assert any(str(data) in line for line in result["data_changes_allowed"])
    assert_ok(allowed_replay)
    [new_run] = new_run_folders(replay_cwd)
    assert any(str(data) in line for line in read_yaml(new_run / "run.yaml")["data_changes_allowed"])
    assert not (tmp_path / "outputs").exists()  # a refused replay leaves nothing behind
    assert read_json(run / "summary.json")["epochs_completed"] == 1  # the resume did not train
