"""One training run, from a validated config to a filled run folder.

build everything → (restore a checkpoint) → fit → test with the best checkpoint →
summary.json, curves.png and the results table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from rich.console import Console

from dltrain import distributed, runs
from dltrain.atomic import DiskFull
from dltrain.checkpoint import load_checkpoint, versions
from dltrain.console import err_console
from dltrain.data import load_data
from dltrain.data.batching import iterate, num_batches
from dltrain.device import (
    Precision,
    apply_performance,
    performance_settings,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    set_threads,
    step_flops,
    wants_determinism,
)
from dltrain.distributed import Dist
from dltrain.errors import UserError
from dltrain.fastpath import (
    CompileClock,
    FastPath,
    compile_failures_as_user_errors,
    compile_model,
)
from dltrain.fingerprint import fingerprint
from dltrain.loggers import build_loggers, console_log
from dltrain.losses import build_eval_loss, build_loss
from dltrain.memory import allocating, check_model_fits
from dltrain.models import build_model
from dltrain.optim import (
    Schedule,
    build_optimizer,
    build_schedule,
    retune_schedule,
    set_hyperparameters,
    split_decay,
)
from dltrain.plots import plot_curves
from dltrain.schema import (
    TrainConfig,
    fields_of,
    load_config,
    resolve_monitor,
    resolve_paths,
    to_dict,
)
from dltrain.train.callbacks import CheckpointWriter, DiagnosticsRecorder, LoggerFanOut
from dltrain.train.ema import EMA
from dltrain.train.interrupt import AgreedStop, StopOnSignal
from dltrain.train.loop import (
    Callback,
    Job,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingPruned,
    evaluate,
    fit,
    min_last_batch,
    optimizer_steps,
)
from dltrain.train.progress import make_progress
from dltrain.train.report import count_parameters, print_end, print_start

CURVES = "curves.png"


def join(config: TrainConfig) -> Dist:
    """This process's part in its launch: a process of a DDP job joins the process group (once);
    a process on its own gets ``Dist()``."""
    launch = distributed.detect()
    if not distributed.check_strategy(config.trainer.strategy, launch):
        return Dist()
    device = resolve_device(config.trainer.device, launch.local_rank)
    distributed.connect(launch, device.type)
    return Dist(launch)


def build_job(config: TrainConfig, dist: Optional[Dist] = None) -> Job:
    """Data, model, loss, optimizer and schedule for ``config``, seeded and on its device;
    under DDP (``dist``), on this process's device and wrapped for gradient averaging."""
    trainer = config.trainer
    dist = dist or Dist()
    device = resolve_device(trainer.device, dist.launch.local_rank if dist.distributed else None)
    precision = Precision(trainer.precision, device)  # refuses 16-mixed off CUDA before loading
    threads = set_threads(trainer.threads) if trainer.threads != "auto" else ""
    deterministic = wants_determinism(trainer.deterministic, device)
    seed_everything(trainer.seed, deterministic)
    data = load_data(config.data)
    info = data.info
    monitor, mode = resolve_monitor(trainer, info.task)
    criterion = build_loss(config.loss, info.task)
    eval_criterion = build_eval_loss(config.loss, info.task)
    # the model is built after seeding so its initial weights depend on trainer.seed only.
    # Its parameters are weighed first (on the meta device, drawing no random numbers): a model
    # larger than the device's free memory is refused before the allocator is asked
    smaller = f"the model's size ({model_size(config)})"
    check_model_fits(lambda: build_model(config, info), device, smaller)
    with allocating("allocating the model's parameters", smaller, device):
        model = build_model(config, info).to(device)
    if trainer.threads == "auto":  # by the cost of a step: see device.set_threads
        threads = set_threads("auto", None if device.type != "cpu" else lambda: step_flops(
            model, info.input_shape, trainer.batch_size, device))
    if dist.distributed:
        model = _check_ddp(config, model, device, len(data.train), dist.world_size)
    settings = performance_settings(
        device.type, deterministic=deterministic,
        conv2d=any(isinstance(m, torch.nn.Conv2d) for m in model.modules()))
    apply_performance(settings, device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config.optim, model, config.regularization.weight_decay,
                                fused=settings.fused_optimizer)
    schedule = make_schedule(config, optimizer, model, len(data.train), mode, dist.world_size)
    generator = torch.Generator().manual_seed(trainer.seed)
    with allocating(f"moving the data set onto it ({len(data.train)}/{len(data.val)}/"
                    f"{len(data.test)} samples)",
                    "the data set's size, or train with trainer.device=cpu", device):
        data = data.to(device)
    fast = FastPath(model, precision, settings)
    if trainer.compile:
        fast.model = compile_model(model, trainer.compile_mode, config.model.name)
        fast.compile_mode, fast.clock = trainer.compile_mode, CompileClock(enabled=True)
        # inductor uses CUDA graphs in these modes, and only on CUDA
        fast.cudagraphs = (device.type == "cuda"
                           and trainer.compile_mode in ("reduce-overhead", "max-autotune"))
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # around the compiled module, so one compilation serves training and evaluation
        fast.ddp = DistributedDataParallel(
            fast.model, device_ids=[device.index] if device.type == "cuda" else None)
    return Job(
        config=config, model=model, criterion=criterion.to(device),
        eval_criterion=eval_criterion.to(device), optimizer=optimizer,
        schedule=schedule, data=data, device=device, generator=generator,
        monitor=monitor, mode=mode, l1_params=split_decay(model)[0], fast=fast, dist=dist,
        threads=threads,
        ema=EMA(model, trainer.ema_decay) if trainer.ema_decay is not None else None,
        # rank 0 alone measures: after DDP's averaging every process holds the same gradients
        diagnostics=make_diagnostics(config, model, data, eval_criterion.to(device))
        if dist.is_main else None,
    )


PROBE_SAMPLES = 256  # the fixed validation batch on which diagnostics look at activations


def make_diagnostics(config: TrainConfig, model: torch.nn.Module, data: Any,
                     criterion: torch.nn.Module) -> Any:
    """trainer.diagnostics' recorder, with its probe: the first validation samples (no random
    draw), or None when off."""
    from dltrain.diagnostics import Diagnostics, wanted

    if not wanted(config.trainer.diagnostics, model):
        return None
    x, y = next(iterate(data.val, PROBE_SAMPLES, shuffle=False))
    return Diagnostics(model, x, y, criterion)


def model_size(config: TrainConfig) -> str:
    """The settings that size ``config``'s model, as the user would type them."""
    import json

    sizes = [f"model.{name}={json.dumps(value, separators=(',', ':'))}"
             for name, value in fields_of(config.model).items()
             if isinstance(value, (int, list, tuple)) and not isinstance(value, bool)]
    return ", ".join(sizes) or f"model={config.model.name}"


def _check_ddp(config: TrainConfig, model: torch.nn.Module, device: torch.device, n_train: int,
               world_size: int) -> torch.nn.Module:
    """Refuse what N processes cannot split; SyncBatchNorm when asked for."""
    trainer = config.trainer
    if trainer.batch_size < world_size or n_train < world_size:
        raise UserError(f"trainer.batch_size={trainer.batch_size} is the global batch, split over "
                        f"{world_size} processes: each needs a sample of every batch "
                        f"({n_train} training samples); use a batch of at least {world_size}")
    if trainer.sync_batchnorm:
        if device.type != "cuda":
            raise UserError("trainer.sync_batchnorm=true needs CUDA: torch's SyncBatchNorm does "
                            "not run on the CPU (drop it, or train on GPUs)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                  n_train: int, mode: str, world_size: int = 1) -> Schedule:
    """The lr schedule; per-step schedules count optimizer steps (batches / trainer.accumulate)."""
    trainer = config.trainer
    batches = num_batches(n_train, trainer.batch_size, min_last=min_last_batch(model, world_size))
    limit = trainer.overfit_batches or trainer.limit_batches
    steps = optimizer_steps(min(batches, limit or batches), trainer.accumulate)
    return build_schedule(config.sched, optimizer, epochs=trainer.epochs, steps_per_epoch=steps,
                          base_lr=config.optim.lr, mode=mode)


def apply_changes(job: Job, old: TrainConfig) -> None:
    """A resume accepted changed settings (--allow-changes): the optimizer and the schedule
    restored from the checkpoint take them from here on. The model, the loss and the trainer's
    per-step settings were already built from the new config."""
    config = job.config
    set_hyperparameters(job.optimizer, config.optim, config.regularization.weight_decay)
    job.schedule = retune_schedule(
        job.schedule, config.sched, job.optimizer, lr=config.optim.lr, old_lr=old.optim.lr,
        epochs_done=job.state.epoch, steps_done=job.state.step,
        build=lambda: make_schedule(config, job.optimizer, job.model, len(job.data.train), job.mode,
                                    job.dist.world_size))
    if job.state.batch:  # inside an epoch: the rest of it runs at the new lr
        job.state.epoch_lr = job.optimizer.param_groups[0]["lr"]


# TrainState fields saved in and restored from a checkpoint, beside the state dicts
STATE_KEYS = ("epoch", "step", "best", "best_epoch", "bad_epochs", "history", "stop_reason",
              "batch", "epoch_rng", "partial_sums", "partial_time", "epoch_lr")


def make_checkpoint(job: Job) -> Dict[str, Any]:
    """The checkpoint: plain state dicts and values only, so it loads with weights_only=True.
    Under DDP every process calls it (it gathers each process's random state); rank 0 saves it.
    """
    # "model" holds the weights the run evaluates with (eval, predict and export read it): the
    # average when trainer.ema_decay is set, the trained weights then in "train_model"
    weights = ({"model": job.ema.state_dict(), "train_model": job.model.state_dict(),
                "ema_updates": job.ema.updates} if job.ema is not None
               else {"model": job.model.state_dict()})
    return {
        **weights,
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.schedule.state_dict(),
        "scaler": job.fast.precision.scaler.state_dict(),  # empty unless 16-mixed
        **{key: getattr(job.state, key) for key in STATE_KEYS},
        "monitor": job.monitor,
        "mode": job.mode,
        "rng": rng_state(job.generator),
        # each process's own (its dropout draws differ): a resume on as many processes restores
        # each its own, on another number of processes all take rank 0's
        **({"rng_ranks": job.dist.all_gather_object(rng_state(job.generator))}
           if job.dist.distributed else {}),
        "config": to_dict(job.config),
        "data_info": dataclasses.asdict(job.data.info),
        "versions": versions(),
    }


def restore(job: Job, ckpt: Dict[str, Any]) -> None:
    """Put ``job`` exactly where the checkpoint left it: weights, optimizer, schedule, progress
    counters and every random generator."""
    try:
        job.model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        if job.ema is not None:  # a run that turned the average on at this resume starts it here
            job.ema.load_state_dict(ckpt["model"] if "train_model" in ckpt else job.ema.state_dict(),
                                    ckpt.get("ema_updates", 0))
    except RuntimeError as e:
        raise UserError(f"the saved weights do not fit this model (was the model changed?): "
                        f"{str(e).splitlines()[0]}") from None
    job.optimizer.load_state_dict(ckpt["optimizer"])
    job.schedule.load_state_dict(ckpt["scheduler"])
    # a checkpoint from before 16-mixed (or of another precision) has no scaler state: the
    # scaler then starts afresh, as it does in a new run
    if ckpt.get("scaler") and job.fast.precision.scaler.is_enabled():
        job.fast.precision.scaler.load_state_dict(ckpt["scaler"])
    for key in STATE_KEYS:
        setattr(job.state, key, ckpt.get(key, getattr(job.state, key)))
    job.state.history = list(job.state.history)
    ranks = ckpt.get("rng_ranks") or []
    set_rng_state(ranks[job.dist.rank] if len(ranks) == job.dist.world_size else ckpt["rng"],
                  job.generator)


def run_training(config: TrainConfig, run_dir: Path, console: Console, *,
                 resume: bool = False, event: Optional[Dict[str, Any]] = None,
                 command: Optional[List[str]] = None, callbacks: Sequence[Callback] = (),
                 record: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Train ``config`` into ``run_dir`` (from its last.pt when ``resume``); returns the summary,
    also written to summary.json. One process at a time trains in a folder (a lock).

    ``event`` (resume only) goes into run.yaml's record of the resume; its ``changes`` (accepted
    with --allow-changes) take effect from the resume on. ``record`` adds to a new run's
    run.yaml. A signal saves last.pt, writes an interrupted summary and raises
    :class:`TrainingInterrupted`.
    """
    run_dir = Path(run_dir)
    dist = join(config)
    if not dist.is_main:  # the other processes of a DDP job train and write nothing
        console, callbacks = Console(quiet=True), ()
    command = command or ["dltrain", *sys.argv[1:]]
    # train.log: the plain text of what the run prints (rank 0's), beside metrics.csv
    with runs.locked(run_dir) if dist.is_main else contextlib.nullcontext(), \
            console_log(run_dir, console, err_console):
        try:
            summary = _train(config, run_dir, console, dist, resume=resume, event=event or {},
                             command=command, callbacks=callbacks, record=record or {})
        except DiskFull as e:
            e.advice = e.advice or after_full_disk(run_dir, command, config.trainer.epochs)
            raise
    distributed.disconnect()
    return summary


def after_full_disk(run_dir: Path, command: List[str], epochs: int) -> str:
    """What a run stopped by a full disk still has, and how to go on once space is freed.

    last.pt is read back before it is called intact: a resume starts from it. A run whose
    training had ended (the disk filled while its summary was written) is not resumed but
    evaluated: ``dltrain resume`` refuses a finished run."""
    import shlex

    last = run_dir / runs.CHECKPOINTS / runs.LAST
    try:
        ckpt = load_checkpoint(last) if last.is_file() else None
    except UserError:
        ckpt = None
    if ckpt is None:
        return (f"no checkpoint to resume from was saved yet; once space is freed, start again: "
                f"{shlex.join(command)}")
    epoch, batch = ckpt.get("epoch", 0), ckpt.get("batch")
    if epoch >= epochs or ckpt.get("stop_reason"):
        return (f"training had ended and the checkpoints are intact ({last}, after epoch "
                f"{epoch}); once space is freed, evaluate it: "
                f"dltrain eval {shlex.quote(str(run_dir))}")
    where = f"epoch {epoch + 1}, batch {batch}" if batch else f"after epoch {epoch}"
    return (f"the last good checkpoint, {last} ({where}), is intact; once space is freed, "
            f"continue with: dltrain resume {shlex.quote(str(run_dir))}")


def _train(config: TrainConfig, run_dir: Path, console: Console, dist: Dist, *, resume: bool,
           event: Dict[str, Any], command: List[str], callbacks: Sequence[Callback],
           record: Dict[str, Any]) -> Dict[str, Any]:
    typed_paths = resolve_paths(config)
    job = build_job(config, dist)
    info = job.data.info
    main = dist.is_main
    if resume:
        ckpt = load_checkpoint(run_dir / runs.CHECKPOINTS / runs.LAST, job.device)
        restore(job, ckpt)
        if event.get("changes"):
            apply_changes(job, load_config(ckpt["config"]))
        job.state.stop_reason = None  # asked for more epochs: an early stop no longer applies
    elif main:
        # the saved config holds absolute paths, so the folder replays from any directory;
        # run.yaml keeps them as typed
        runs.save_config(run_dir, to_dict(config))
        record = {"paths": typed_paths, "data": fingerprint(config.data),
                  "performance": {**job.fast.record(job.optimizer),
                                  "threads": torch.get_num_threads(), "threads_rule": job.threads},
                  **record}
    if dist.distributed:
        event = {**event, "processes": dist.world_size} if resume else event
        record = record if resume else {**record, "distributed": _launch_record(dist)}
    # metrics.csv, TensorBoard, MLflow, ...: started from the checkpoint's history, which drops
    # the epochs logged past last.pt; they take each epoch before the writer saves last.pt. They
    # start before run.yaml is written, which keeps what they record (their run ids, under
    # loggers:): one that cannot start stops the run here, before it trains or records anything
    loggers = LoggerFanOut(build_loggers(config.logger, run_dir) if main else [])
    loggers.start(job.state.history, to_dict(config))
    tracking = {"loggers": ids} if (ids := loggers.record()) else {}
    if main:
        runs.write_record(run_dir, seed=config.trainer.seed, device=str(job.device),
                          versions=versions(), command=command, extra={**record, **tracking},
                          event={"from_epoch": job.state.epoch, **event, **tracking}
                          if resume else None)

    n_params = count_parameters(job.model)
    outputs = f"{info.num_outputs} output{'s' if info.num_outputs != 1 else ''}"
    print_start(console, job.model,
                f"{config.model.name} on {info.name} ({info.task}, input {tuple(info.input_shape)}, "
                f"{outputs})",
                [f"run folder: {run_dir}",
                 f"device: {job.device}  train/val/test: {len(job.data.train):,}/"
                 f"{len(job.data.val):,}/{len(job.data.test):,}"
                 + (f"  resuming after epoch {job.state.epoch}" if resume else "")],
                config.trainer.progress)

    writer = CheckpointWriter(run_dir, lambda: make_checkpoint(job), write=main)
    diagnostics = (DiagnosticsRecorder(run_dir, job.state.epoch)
                   if job.diagnostics is not None else None)
    hooks: List[Callback] = [loggers, *([diagnostics] if diagnostics else []), writer, *callbacks]
    progress = make_progress(config.trainer.progress, console) if main else None
    if progress is not None:
        hooks.append(progress)
    start = time.perf_counter()

    def finish(status: str) -> Dict[str, Any]:
        summary = summarize(job, run_dir, status, time.perf_counter() - start, n_params)
        if main:
            runs.write_json(run_dir / runs.SUMMARY, summary)
            title = f"{config.model.name} on {info.name}"
            plot_curves(job.state.history, run_dir / CURVES, title,
                        best_epoch=job.state.best_epoch, monitor=job.monitor)
            pictures = [run_dir / CURVES]
            if diagnostics is not None and job.state.history:
                pictures.append(diagnostics.plot(title))
            loggers.finish(status, [run_dir / runs.SUMMARY, run_dir / runs.RECORD, *pictures],
                           summary)
        return summary

    status = "completed"
    # a signal after the last step waits for the summary: a finished run always gets one.
    # torch.compile compiles lazily, in the steps and evaluations: a failure is one line
    batch_size = config.trainer.batch_size
    with StopOnSignal() as stop, job.fast.clock, \
            compile_failures_as_user_errors(config.model.name, config.trainer.compile), \
            allocating(f"in a training step (a batch of {batch_size} samples)",
                       f"trainer.batch_size={batch_size} or the model's size "
                       f"({model_size(config)})", job.device):
        try:
            fit(job, hooks, AgreedStop(stop, dist))
        except TrainingDiverged as e:
            status, job.state.stop_reason = "failed", str(e)
        except TrainingPruned as e:  # a search's pruner stopped the trial after an epoch
            status, job.state.stop_reason = "pruned", str(e)
        except TrainingInterrupted:
            writer.save_last(make_checkpoint(job))
            finish("interrupted")  # the folder still describes itself: epochs done, best so far
            raise
        except BaseException:  # a crash: no summary, but the loggers learn that the run failed
            loggers.finish("failed")
            raise
        finally:
            for cb in hooks:
                cb.close()
            dist.end_votes()
        if job.state.stop_reason and status == "completed":
            status = "early_stopped"
        summary = finish(status)
    print_end(console, run_dir, summary, config.trainer.progress)
    return summary


def _launch_record(dist: Dist) -> Dict[str, Any]:
    """run.yaml's record of how the job was launched."""
    launch = dist.launch
    return {"launcher": launch.source, "processes": launch.world_size,
            "backend": torch.distributed.get_backend(), "restart": launch.restart}


def summarize(job: Job, run_dir: Path, status: str, train_time: float, n_params: int) -> Dict[str, Any]:
    s = job.state
    info = job.data.info
    test: Dict[str, float] = {}
    best_path = run_dir / runs.CHECKPOINTS / runs.BEST
    # rank 0 wrote best.pt: it reads it and hands the weights to the other processes, which
    # need not see its disk; the test set is then evaluated by all of them. A pruned trial is
    # not: pruning saves the search's time, and its model is no candidate
    if status not in ("failed", "interrupted", "pruned") and job.dist.broadcast_object(best_path.exists()):
        if job.dist.is_main:
            job.model.load_state_dict(load_checkpoint(best_path, job.device)["model"])
        job.dist.broadcast_module(job.model)
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
        **({"processes": job.dist.world_size} if job.dist.distributed else {}),
        "seed": job.config.trainer.seed,
        "train_time_s": train_time,
        "mean_samples_per_s": sum(speeds) / len(speeds) if speeds else 0.0,
        # torch.compile's warm-up (all compilations of training, validation and test), not
        # counted in samples/s
        **({"compile_time_s": job.fast.clock.seconds} if job.fast.compile_mode else {}),
    }
