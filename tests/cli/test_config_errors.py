"""Bad input ends in one readable error and a non-zero exit, before any run folder exists.

Each message must name the offending key or value and say what is allowed; none may show a
traceback. Except for the device check, these fail while composing the config, before torch is
imported, so they cost well under a second each.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import QUICK_TIMEOUT_S, cli_env, describe, run_dltrain

# (overrides, words the error must contain: the key or value at fault, then what is allowed)
BAD_INPUT = [
    pytest.param(["optim.lr=-1"], ["optim.lr", "-1", "> 0"], id="negative-lr"),
    pytest.param(["regularization.dropout=1.5"], ["regularization.dropout", "1.5", "[0, 1)"],
                 id="dropout-above-1"),
    pytest.param(["trainer.epochs=0"], ["trainer.epochs", "0", ">= 1"], id="zero-epochs"),
    pytest.param(["trainer.batch_size=0"], ["trainer.batch_size", "0", ">= 1"], id="zero-batch"),
    pytest.param(["data=diabetes", "loss=cross_entropy"],
                 ["cross_entropy", "regression", "mse", "huber", "l1"], id="loss-vs-task"),
    pytest.param(["model=lstmm"], ["lstmm", "cnn", "gru", "lstm", "mlp", "rnn"],
                 id="unknown-model"),
    pytest.param(["optim.lrr=3"], ["lrr", "lr", "betas", "eps"], id="unknown-key"),
    pytest.param(["optim.lr=abc"], ["optim.lr", "abc", "float"], id="wrong-type"),
    pytest.param(["trainer.device=cuda"], ["trainer.device", "cuda", "cpu"], id="missing-cuda"),
    pytest.param(["+_target_=os.system"], ["_target_", "model", "optim", "trainer"],
                 id="target-injection"),
]


@pytest.mark.parametrize("overrides, expected", BAD_INPUT)
def test_bad_input_fails_cleanly_without_a_run_folder(tmp_path, overrides, expected):
    if "trainer.device=cuda" in overrides:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here, so trainer.device=cuda is valid")
    run_dir = tmp_path / "run"
    proc = run_dltrain([*overrides, f"hydra.run.dir={run_dir}"], tmp_path)

    assert proc.returncode == 2, describe(proc)  # dltrain's exit code for a user's mistake
    error = proc.stderr.lower()
    assert "error" in error, describe(proc)
    for word in expected:
        assert word.lower() in error, f"{word!r} not in the error\n{describe(proc)}"
    assert "Traceback" not in proc.stdout + proc.stderr, describe(proc)
    assert not run_dir.exists(), (
        f"a failed start left a run folder: {sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob('*'))}"
    )
    assert not (tmp_path / "outputs").exists()


def test_a_config_error_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from dltrain.cli import main\n"
        "try:\n"
        f"    main(['optim.lr=-1', 'hydra.run.dir={tmp_path / 'run'}'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code)\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 0, describe(proc)
    assert "exit 2" in proc.stdout, describe(proc)
    assert "optim.lr" in proc.stderr
    assert "torch imported: False" in proc.stdout, describe(proc)
