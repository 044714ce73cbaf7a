"""One trial: one workload trained by one approach, in a fresh process; the result is a JSON file.

Every approach trains the model, optimizer and shuffling generator that dltrain's own
``build_job`` makes from the workload's overrides, so the initial weights and the maths are the
same; they differ only in the loop around the step. Each trial first constructs a
``torch.optim.Adam`` (its first construction imports torch._dynamo, seconds on a small CPU) and
sets the same number of torch threads. The timed region of every approach is its training passes
over the training split: the shuffle, the steps, the per-step work and the epoch's host sync.
Validation and test passes are outside it, for every approach.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict

import torch
import torch.nn.functional as F

Result = Dict[str, Any]


def main(spec: Dict[str, Any]) -> None:
    if spec.get("threads"):  # 0: torch's default, as a run with trainer.threads=null has
        torch.set_num_threads(spec["threads"])
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the warm-up: imports torch._dynamo
    workdir = Path(spec["workdir"])
    if spec["approach"] == "lean_minimal":
        result = lean_minimal()
    else:
        from dltrain.launch import compose

        config = compose(spec["overrides"])  # the config the CLI composes, validated
        result = APPROACHES[spec["approach"]](config, workdir)
    result["threads_at_end"] = torch.get_num_threads()
    result["torch"] = torch.__version__
    Path(spec["out"]).write_text(json.dumps(result))


def digest(model: torch.nn.Module, path: Path) -> str:
    """sha256 of the weights (and saves them): equal digests mean bit-identical weights."""
    state = model.state_dict()
    torch.save(state, path)
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """The wall time and this process's CPU time (all its threads) of the timed regions. On a
    shared machine their ratio tells how much of the cores the trial really had: with one torch
    thread, CPU/wall well under 1 means another process took the core."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.stops = 0
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]
        self.stops += 1


def train_result(job: Any, workdir: Path, watch: Stopwatch, steps: int, epochs: int) -> Result:
    samples = len(job.data.train) * epochs
    return {"train_s": watch.wall, "cpu_s": watch.cpu, "samples": samples,
            "samples_per_s": samples / watch.wall, "steps": steps, "epochs": epochs,
            "n_train": len(job.data.train), "weights": digest(job.model, workdir / "weights.pt")}


def lean(config: Any, workdir: Path) -> Result:
    """(b) A hand-written loop: index slicing in the order dltrain draws (randperm on the same
    generator), ``zero_grad(set_to_none=True)``, nothing read back from the device per step."""
    from dltrain.train.run import build_job

    job = build_job(config)
    model, optimizer, generator = job.model, job.optimizer, job.generator
    train = job.data.train
    assert train.transform is None, "the lean loop feeds the stored tensors as they are"
    x, y, n = train.x, train.y, len(train)
    batch_size, epochs = config.trainer.batch_size, config.trainer.epochs
    model.train()
    steps, watch = 0, Stopwatch()
    for _ in range(epochs):
        watch.start()
        order = torch.randperm(n, generator=generator).to(x.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        sync(x.device)
        watch.stop()
    return train_result(job, workdir, watch, steps, epochs)


def dataloader(config: Any, workdir: Path) -> Result:
    """(c) The common baseline: TensorDataset + DataLoader(shuffle=True), in this process."""
    from torch.utils.data import DataLoader, TensorDataset

    from dltrain.train.run import build_job

    job = build_job(config)
    model, optimizer, device = job.model, job.optimizer, job.device
    loader = DataLoader(TensorDataset(job.data.train.x, job.data.train.y),
                        batch_size=config.trainer.batch_size, shuffle=True,
                        generator=job.generator)
    model.train()
    steps, watch = 0, Stopwatch()
    for _ in range(config.trainer.epochs):
        watch.start()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        sync(device)
        watch.stop()
    return train_result(job, workdir, watch, steps, config.trainer.epochs)


def dltrain(config: Any, workdir: Path) -> Result:
    """(a) What the CLI runs: ``run_training`` with the composed config and the CLI's console,
    its progress display (``trainer.progress``: rich draws on the trial's pseudo-terminal),
    metrics.csv, checkpoints and the test pass.

    Timed from this callback's ``on_epoch_start`` (before the display's) to the start of the
    epoch's validation pass, which is dltrain's host sync of the epoch plus every step and
    per-step hook. The validation pass, and the epoch-end hooks (metrics.csv, checkpoints, the
    display's epoch line) are timed apart and reported beside it."""
    import dltrain.train.loop as loop
    import dltrain.train.run as run
    from dltrain.console import console

    clock = EpochClock(loop.Callback, workdir)
    evaluate, fit = loop.evaluate, run.fit
    loop.evaluate, run.fit = clock.wrap_evaluate(evaluate), clock.wrap_fit(fit)
    try:
        summary = run.run_training(config, workdir / "run", console, callbacks=[clock.hook])
    finally:
        loop.evaluate, run.fit = evaluate, fit
    epochs = summary["epochs_completed"]
    if clock.watch.stops != epochs or clock.fit_s == 0:
        raise RuntimeError(
            f"the bench's clock saw {clock.watch.stops} validation passes in {epochs} epochs: "
            "dltrain.train.loop.fit no longer calls loop.evaluate('val') after each training "
            "pass, or run_training no longer calls run.fit; update bench/trial.py's EpochClock")
    samples = clock.n_train * epochs
    self_timed = sum(row["epoch_time_s"] for row in clock.rows)
    # torch.compile's warm-up (trainer.compile) is left out, as dltrain's own samples/s does
    train_s = clock.watch.wall - clock.compile_s
    return {"train_s": train_s, "cpu_s": clock.watch.cpu, "compile_s": clock.compile_s,
            "samples": samples, "samples_per_s": samples / train_s,
            "steps": summary["steps"], "epochs": epochs, "n_train": clock.n_train,
            "weights": clock.weights, "status": summary["status"],
            # dltrain's own epoch_time_s (metrics.csv): from after its epoch-start hooks
            "self_timed_s": self_timed, "self_timed_samples_per_s": samples / self_timed,
            # fit() from start to end less the validation passes: the epoch-end hooks included
            "fit_s": clock.fit_s, "val_s": clock.val_s,
            "fit_less_val_samples_per_s": samples / (clock.fit_s - clock.val_s)}


def compile_seconds(job: Any) -> float:
    """The time dltrain's fast path has spent compiling so far (0 without trainer.compile)."""
    clock = getattr(getattr(job, "fast", None), "clock", None)
    return getattr(clock, "seconds", 0.0)


class EpochClock:
    """Times dltrain's training passes from the outside: a callback marks each epoch's start,
    a wrapper of ``loop.evaluate`` its end (the validation pass follows the training pass)."""

    def __init__(self, callback_base: type, workdir: Path) -> None:
        self.watch = Stopwatch()
        self.val_s = self.fit_s = self.compile_s = 0.0
        self.n_train, self.rows, self.weights = 0, [], ""
        self.compiled_before = 0.0
        clock = self

        class Hook(callback_base):  # type: ignore[misc, valid-type]
            def on_epoch_start(self, job: Any, n_batches: int) -> None:
                clock.n_train = len(job.data.train)
                clock.compiled_before = compile_seconds(job)
                clock.watch.start()

            def on_epoch_end(self, job: Any, row: Dict[str, float], improved: bool) -> None:
                clock.rows.append(dict(row))
                # the final weights: run_training loads best.pt for its test pass after fit
                if job.state.epoch == job.config.trainer.epochs:
                    clock.weights = digest(job.model, workdir / "weights.pt")

        self.hook = Hook()

    def wrap_evaluate(self, evaluate: Callable) -> Callable:
        def timed(job: Any, split: Any, prefix: str) -> Dict[str, float]:
            if prefix == "val":
                sync(job.device)
                self.watch.stop()
                self.compile_s += compile_seconds(job) - self.compiled_before
            start = time.perf_counter()
            try:
                return evaluate(job, split, prefix)
            finally:
                self.val_s += time.perf_counter() - start
        return timed

    def wrap_fit(self, fit: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fit(*args, **kwargs)
            finally:
                self.fit_s += time.perf_counter() - start
        return timed


def lightning(config: Any, workdir: Path) -> Result:
    """(d) PyTorch Lightning's Trainer on the same module, optimizer and a DataLoader: its
    default progress bar on (the rich one where rich is installed, as dltrain installs it), a
    CSVLogger, no checkpointing, the loss logged each step as a Lightning user does. Timed from
    ``on_train_epoch_start`` to ``on_train_epoch_end``."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from dltrain.train.run import build_job

    job = build_job(config)
    watch = Stopwatch()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = job.model

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return job.optimizer

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            watch.start()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            watch.stop()

    loader = DataLoader(TensorDataset(job.data.train.x, job.data.train.y),
                        batch_size=config.trainer.batch_size, shuffle=True,
                        generator=job.generator)
    accelerator = {"cuda": "gpu"}.get(job.device.type, job.device.type)
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=config.trainer.epochs,
                        logger=CSVLogger(str(workdir / "lightning")), enable_checkpointing=False,
                        enable_progress_bar=True, num_sanity_val_steps=0, callbacks=[Clock()])
    trainer.fit(Module(), train_dataloaders=loader)
    return train_result(job, workdir, watch, trainer.global_step, trainer.current_epoch)


def lean_minimal() -> Result:
    """The memory baseline: the default run's data and model (``dltrain`` with no overrides:
    the digits MLP, batch 64, 30 epochs) trained by a hand-written loop that imports only what
    it needs (no Hydra, no run folder, no display)."""
    from dltrain.data import load_data
    from dltrain.models import build_model
    from dltrain.schema import load_config

    config = load_config({"model": {"name": "mlp"}, "activation": {"name": "relu"},
                          "optim": {"name": "adam"}, "data": {"name": "digits"}})
    torch.manual_seed(config.trainer.seed)
    data = load_data(config.data)
    model = build_model(config, data.info)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    generator = torch.Generator().manual_seed(config.trainer.seed)
    x, y = data.train.x, data.train.y
    batch_size, steps = config.trainer.batch_size, 0
    for _ in range(config.trainer.epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    return {"steps": steps, "epochs": config.trainer.epochs, "n_train": len(y)}


def dltrain_nodiag(config: Any, workdir: Path) -> Result:
    """(a) with trainer.diagnostics=false: the baseline of the diagnostics' overhead."""
    config.trainer.diagnostics = False
    return dltrain(config, workdir)


def dltrain_diag(config: Any, workdir: Path) -> Result:
    """(a) with trainer.diagnostics=true, whatever ``auto`` would choose for the model."""
    config.trainer.diagnostics = True
    return dltrain(config, workdir)


APPROACHES: Dict[str, Callable[[Any, Path], Result]] = {
    "dataloader": dataloader, "lean": lean, "lightning": lightning, "dltrain": dltrain_diag,
    "dltrain_nodiag": dltrain_nodiag,
}
