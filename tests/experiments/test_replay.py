"""``dltrain replay RUN``: a new run from a run folder alone, equal to the original bit for bit.

The replays are run once per session by ``second_wave`` (conftest.py).
"""

from __future__ import annotations

import pytest

from .helpers import (EPOCHS, REPLAY_LR, assert_user_error, describe, dltrain, read_csv, read_yaml,
                      without_timing)

pytestmark = pytest.mark.slow


def test_replay_trains_in_a_new_folder(dropout_run, replays):
    assert replays.plain != dropout_run.run_dir
    assert f"replaying {dropout_run.run_dir}" in replays.plain_stdout
    assert (replays.plain / "checkpoints" / "last.pt").is_file()
    assert read_yaml(replays.plain / ".hydra" / "config.yaml") == \
        read_yaml(dropout_run.run_dir / ".hydra" / "config.yaml")


def test_replay_equals_the_original_bit_for_bit(dropout_run, replays):
    original = read_csv(dropout_run.run_dir / "metrics.csv")
    replayed = read_csv(replays.plain / "metrics.csv")
    assert len(original) == EPOCHS
    assert list(original[0]) == list(replayed[0])  # same columns, same order
    assert without_timing(replayed) == without_timing(original)


def test_hydra_config_path_replay_equals_the_original(dropout_run, replays):
    original = read_csv(dropout_run.run_dir / "metrics.csv")
    assert without_timing(read_csv(replays.hydra / "metrics.csv")) == without_timing(original)


def test_replay_with_an_override_changes_the_run(dropout_run, replays):
    original_config = read_yaml(dropout_run.run_dir / ".hydra" / "config.yaml")
    new_config = read_yaml(replays.new_lr / ".hydra" / "config.yaml")
    assert new_config["optim"]["lr"] == REPLAY_LR
    # the override is the only difference
    new_config["optim"]["lr"] = original_config["optim"]["lr"]
    assert new_config == original_config

    original = read_csv(dropout_run.run_dir / "metrics.csv")
    changed = read_csv(replays.new_lr / "metrics.csv")
    assert [float(row["lr"]) for row in changed] == [REPLAY_LR] * EPOCHS
    assert changed[0]["train_loss"] != original[0]["train_loss"]
    assert changed[-1]["val_loss"] != original[-1]["val_loss"]


def test_replay_of_a_folder_that_is_not_a_run_fails_clearly(tmp_path):
    not_a_run = tmp_path / "notes"
    not_a_run.mkdir()
    proc = dltrain(["replay", str(not_a_run)], tmp_path)
    assert_user_error(proc, f"{not_a_run} is not a dltrain run folder", ".hydra/config.yaml")
    assert not (tmp_path / "outputs").exists(), describe(proc)


def test_replay_refuses_to_switch_a_group(dropout_run, tmp_path):
    proc = dltrain(["replay", str(dropout_run.run_dir), "optim=sgd"], tmp_path)
    assert_user_error(proc, "'optim=sgd' switches the optim group", "optim.KEY=VALUE",
                      "dltrain optim=sgd")
    assert not (tmp_path / "outputs").exists(), describe(proc)
