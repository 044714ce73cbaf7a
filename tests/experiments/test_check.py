"""``dltrain check``: compose, validate and build without training or writing anything.

The build runs in this process, through the command's entry point; the mistake, which answers
before torch is imported, in a real process.
"""

from __future__ import annotations

import re

from .helpers import assert_ok, assert_user_error, dltrain, dltrain_here


def test_check_builds_the_model_and_writes_nothing(tmp_path):
    proc = assert_ok(dltrain_here(["check", "model=cnn", "trainer.device=cpu"], tmp_path))
    match = re.search(r"config ok: ([\d,]+) parameters, device cpu", proc.stdout)
    assert match, proc.stdout
    parameters = int(match.group(1).replace(",", ""))
    # the same count as the model table's total row
    total = re.search(r"([\d,]+) trainable", proc.stdout)
    assert total and int(total.group(1).replace(",", "")) == parameters > 0, proc.stdout
    assert "cnn on digits" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no outputs/, no run folder, no log


def test_check_of_an_unknown_model_suggests_the_name(tmp_path):
    proc = dltrain(["check", "model=cnnn"], tmp_path)
    assert_user_error(proc, "unknown model 'cnnn' (did you mean 'cnn'?)",
                      "known: cnn, gru, lstm, mlp, rnn")
    assert list(tmp_path.iterdir()) == []
