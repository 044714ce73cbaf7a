"""trainer.compile (issue 9): torch.compile of the model for training and evaluation. The
checkpoints hold the plain module's weights, so eval, resume and replay load them without
compiling; the compile warm-up is reported apart from samples/s; a model that fails to compile
stops with one line. torch.compile runs on the CPU (inductor's C++ backend with gcc)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
from rich.console import Console

from dltrain import runs
from dltrain.checkpoint import load_checkpoint
from dltrain.errors import UserError
from dltrain.rerun import math_changes
from dltrain.train.loop import fit
from dltrain.train.run import build_job, restore, run_training


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_compile_mode_is_checked(make_config):
    config = make_config(trainer={"compile": True, "compile_mode": "reduce-overhead"})
    assert config.trainer.compile and config.trainer.compile_mode == "reduce-overhead"
    with pytest.raises(UserError, match="trainer.compile_mode='fast' is not allowed"):
        make_config(trainer={"compile": True, "compile_mode": "fast"})


def test_compile_is_free_on_resume(make_config):
    old = make_config()
    new = make_config(trainer={"compile": True, "compile_mode": "max-autotune"})
    assert math_changes(old, new) == []


def test_samples_per_s_leaves_out_the_time_spent_compiling(make_config):
    """The compile clock's seconds inside an epoch count in its epoch_time_s, not in its
    samples/s. Here a fake compilation: the first forward pass sleeps and says it compiled."""
    job = build_job(make_config(trainer={"epochs": 2}))
    pause = 0.3
    model = job.fast.model

    def forward(x):
        if not forward.compiled:
            forward.compiled = True
            time.sleep(pause)
            job.fast.clock.seconds += pause
        return model(x)

    forward.compiled = False
    job.fast.model = forward
    fit(job)
    first, second = job.state.history
    steps = first["epoch_time_s"] - job.fast.clock.seconds
    assert first["epoch_time_s"] >= pause
    assert first["samples_per_s"] == pytest.approx(len(job.data.train) / steps, rel=1e-6)
    assert second["samples_per_s"] == pytest.approx(len(job.data.train) / second["epoch_time_s"],
                                                    rel=1e-6)


def test_a_model_that_cannot_compile_stops_with_one_line_naming_it(make_config, tmp_path,
                                                                  monkeypatch):
    """A missing C++ compiler (inductor's CPU backend): a user-facing error, not a traceback."""
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()  # nothing compiled earlier in this process may be reused
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("no-such-compiler",))
    config = make_config(trainer={"compile": True})
    try:
        with pytest.raises(UserError) as e:
            run_training(config, tmp_path, quiet())
    finally:
        torch._dynamo.reset()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("trainer.compile: torch.compile could not compile model 'mlp' "
                              "(InvalidCxxCompiler: No working C++ compiler found")
    assert message.endswith("train it without trainer.compile=true")


@pytest.mark.slow
def test_compiled_run_saves_plain_weights_that_load_without_compile(make_config, tmp_path):
    """The tiny MLP compiled on the CPU for one epoch: compile_time_s is reported, the
    checkpoint's keys are the plain module's, and a run resumed without compile loads it."""
    import torch._dynamo

    torch._dynamo.reset()  # compile for real, whatever this process compiled before
    config = make_config(trainer={"epochs": 1, "compile": True})
    summary = run_training(config, tmp_path, quiet())
    assert summary["status"] == "completed" and summary["compile_time_s"] > 0
    record = runs.read_record(tmp_path)
    assert record["performance"]["compile"] == "default"

    ckpt = load_checkpoint(tmp_path / runs.CHECKPOINTS / runs.LAST)
    assert not any(key.startswith("_orig_mod.") for key in ckpt["model"])
    plain = build_job(make_config(trainer={"epochs": 1}))
    assert plain.fast.model is plain.model  # not compiled
    restore(plain, ckpt)
    for a, b in zip(plain.model.state_dict().values(), ckpt["model"].values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_compile_from_the_command_line_then_eval_without_it(tmp_path):
    """``dltrain trainer.compile=true`` trains; ``dltrain eval`` loads its best.pt uncompiled."""
    run_dir = tmp_path / "run"
    common = [sys.executable, "-m", "dltrain"]
    train = subprocess.run(
        [*common, "model.hidden_sizes=[32]", "trainer.epochs=1", "trainer.device=cpu",
         "trainer.threads=1", "trainer.progress=plain", "trainer.compile=true",
         f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads((run_dir / runs.SUMMARY).read_text())
    assert summary["compile_time_s"] > 0
    evaluated = subprocess.run([*common, "eval", str(run_dir)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads((run_dir / "eval_test.json").read_text())
    assert result["test_acc"] == pytest.approx(summary["test_acc"])
