"""One training run, from a validated config to a filled run folder.

build everything → fit → test with the best checkpoint → summary.json and the results table.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Dict

import torch
from rich.console import Console

from dltrain import runs
from dltrain.checkpoint import load_checkpoint, versions
from dltrain.data import load_data
from dltrain.device import resolve_device, rng_state, seed_everything, wants_determinism
from dltrain.losses import build_loss
from dltrain.models import build_model
from dltrain.optim import build_optimizer, build_schedule, split_decay
from dltrain.schema import TrainConfig, resolve_monitor, to_dict
from dltrain.data.batching import num_batches
from dltrain.train.loop import Job, TrainingDiverged, evaluate, fit
from dltrain.train.progress import make_progress
from dltrain.train.report import count_parameters, model_table, results_table


def build_job(config: TrainConfig) -> Job:
    """Data, model, loss, optimizer and schedule for ``config``, seeded and on its device."""
    trainer = config.trainer
    device = resolve_device(trainer.device)
    seed_everything(trainer.seed, wants_determinism(trainer.deterministic, device))
    data = load_data(config.data)
    info = data.info
    monitor, mode = resolve_monitor(trainer, info.task)
    criterion = build_loss(config.loss, info.task)
    # the model is built after seeding so its initial weights depend on trainer.seed only
    model = build_model(config, info).to(device)
    optimizer = build_optimizer(config.optim, model, config.regularization.weight_decay)
    schedule = build_schedule(
        config.sched, optimizer, epochs=trainer.epochs,
        steps_per_epoch=num_batches(len(data.train), trainer.batch_size),
        base_lr=config.optim.lr, mode=mode,
    )
    generator = torch.Generator().manual_seed(trainer.seed)
    return Job(
        config=config, model=model, criterion=criterion.to(device), optimizer=optimizer,
        schedule=schedule, data=_to_device(data, device), device=device, generator=generator,
        monitor=monitor, mode=mode, l1_params=split_decay(model)[0],
    )


def _to_device(data, device: torch.device):
    return dataclasses.replace(data, train=data.train.to(device), val=data.val.to(device),
                               test=data.test.to(device))


def make_checkpoint(job: Job) -> Dict[str, Any]:
    s = job.state
    return {
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.schedule.state_dict(),
        "epoch": s.epoch,
        "step": s.step,
        "best": s.best,
        "best_epoch": s.best_epoch,
        "bad_epochs": s.bad_epochs,
        "history": list(s.history),
        "stop_reason": s.stop_reason,
        "monitor": job.monitor,
        "mode": job.mode,
        "rng": rng_state(job.generator),
        "config": to_dict(job.config),
        "data_info": dataclasses.asdict(job.data.info),
        "versions": versions(),
    }


def run_training(config: TrainConfig, run_dir: Path, console: Console) -> Dict[str, Any]:
    """Train ``config`` into ``run_dir``; returns the summary (also written to summary.json)."""
    run_dir = Path(run_dir)
    job = build_job(config)
    info = job.data.info
    n_params = count_parameters(job.model)
    console.print(model_table(job.model, f"{config.model.name} on {info.name} "
                                         f"({info.task}, input {tuple(info.input_shape)}, "
                                         f"{info.num_outputs} outputs)"))
    console.print(f"run folder: {run_dir}", markup=False, highlight=False)
    console.print(f"device: {job.device}  train/val/test: {len(job.data.train)}/"
                  f"{len(job.data.val)}/{len(job.data.test)}", markup=False, highlight=False)

    progress = make_progress(config.trainer.progress, console)
    callbacks = [runs.RunFolder(run_dir, lambda: make_checkpoint(job))]
    if progress is not None:
        callbacks.append(progress)
    start = time.perf_counter()
    status = "completed"
    try:
        fit(job, callbacks)
    except TrainingDiverged as e:
        status, job.state.stop_reason = "failed", str(e)
    finally:
        if hasattr(progress, "close"):
            progress.close()
    train_time = time.perf_counter() - start
    if job.state.stop_reason and status == "completed":
        status = "early_stopped"

    summary = summarize(job, run_dir, status, train_time, n_params)
    runs.write_json(run_dir / runs.SUMMARY, summary)
    console.print(results_table(summary))
    return summary


def summarize(job: Job, run_dir: Path, status: str, train_time: float, n_params: int) -> Dict[str, Any]:
    s = job.state
    info = job.data.info
    test: Dict[str, float] = {}
    best_path = run_dir / runs.CHECKPOINTS / runs.BEST
    if status != "failed" and best_path.exists():
        job.model.load_state_dict(load_checkpoint(best_path, job.device)["model"])
        test = evaluate(job, job.data.test, "test")
    speeds = [row["samples_per_s"] for row in s.history]
    return {
        "status": status,
        **({"reason": s.stop_reason} if s.stop_reason else {}),
        **test,
        f"best_{job.monitor}": s.best,
        "best_epoch": s.best_epoch,
        "monitor": job.monitor,
        "mode": job.mode,
        "epochs_completed": s.epoch,
        "steps": s.step,
        "parameters": n_params,
        "task": info.task,
        "data": info.name,
        "model": job.config.model.name,
        "device": str(job.device),
        "seed": job.config.trainer.seed,
        "train_time_s": train_time,
        "mean_samples_per_s": sum(speeds) / len(speeds) if speeds else 0.0,
    }
