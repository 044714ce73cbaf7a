"""scripts/bench.py's workloads build what the issue states, and its lean loop does dltrain's
maths: the same steps, bit-identical weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from bench import trial  # noqa: E402
from bench.workloads import CLASSES, HELD_OUT, WORKLOADS, num_samples  # noqa: E402

from dltrain.data.prepare import split_indices  # noqa: E402
from dltrain.launch import compose  # noqa: E402


@pytest.mark.parametrize("name", [w.name for w in WORKLOADS.values() if w.train_size])
@pytest.mark.parametrize("quick", [False, True])
def test_synthetic_training_split_has_the_stated_size(name, quick):
    w = WORKLOADS[name]
    config = compose(w.dltrain_overrides(quick=quick, threads=1, progress="none"))
    n = config.data.num_samples
    assert n == num_samples(w.expected_train_size(quick), HELD_OUT)
    y = np.random.default_rng(0).permutation(np.arange(n) % CLASSES)  # as synthetic.py draws
    train, _, _ = split_indices(y, config.data, stratify=True)
    assert len(train) == w.expected_train_size(quick)


def test_lean_loop_matches_dltrain_bit_for_bit(tmp_path):
    config = compose(WORKLOADS["tiny"].dltrain_overrides(quick=True, threads=1, progress="none")
                     + ["trainer.epochs=2"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = trial.dltrain(config, tmp_path / "a")
    lean = trial.lean(config, tmp_path / "b")
    assert ours["steps"] == lean["steps"] == 2 * -(-ours["n_train"] // 32)
    assert ours["weights"] == lean["weights"]
