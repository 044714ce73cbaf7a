"""The ``regularization``, ``trainer`` and ``logger`` nodes, and the whole config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from dltrain.schema.base import Checker, Options, option
from dltrain.schema.data import DataConfig
from dltrain.schema.model import ActivationConfig, ModelConfig
from dltrain.schema.optim import LossConfig, OptimConfig, SchedConfig

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# trainer.precision: float32, bfloat16 autocast, float16 autocast with a gradient scaler (CUDA)
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
STRATEGIES = ("auto", "ddp")
# torch.compile's modes (torch._inductor.list_mode_options, named here without importing torch)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the metrics trainer.monitor may watch for each task, and the direction that is better
MONITORS = {
    "classification": {"val_loss": "min", "val_acc": "max"},
    "regression": {"val_loss": "min", "val_mae": "min", "val_r2": "max"},
}


@dataclass
class RegularizationConfig(Options):
    dropout: float = 0.0
    # given to the optimizer for weights only (not biases, norms); null = the optimizer's own
    # torch default (0.01 for AdamW, 0 for the others). Coupled L2 for SGD, Adam and RMSprop,
    # decoupled for AdamW
    weight_decay: Optional[float] = None
    l1: float = 0.0  # coefficient of the L1 penalty on weights, added to the loss
    batch_norm: bool = False

    def check(self, v: Checker) -> None:
        v.fraction("dropout", self.dropout)
        v.at_least("weight_decay", self.weight_decay, 0)
        v.at_least("l1", self.l1, 0)


@dataclass
class EarlyStoppingConfig(Options):
    patience: Optional[int] = None  # epochs without improvement of trainer.monitor; null = off
    min_delta: float = 0.0

    def check(self, v: Checker) -> None:
        v.at_least("patience", self.patience, 1)
        v.at_least("min_delta", self.min_delta, 0)


@dataclass
class TrainerConfig(Options):
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 1024
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    deterministic: Optional[bool] = None  # null = on for CPU, off for CUDA
    # CPU threads for torch's kernels: N, null (torch's default: one per core) or auto (one
    # thread for a model whose training step is small, torch's default above; see
    # dltrain.device.auto_threads). Any: OmegaConf 2.3 has no Union[int, str] field
    threads: Any = "auto"
    grad_clip: Optional[float] = None  # max global gradient norm; null = no clipping
    monitor: str = "auto"  # auto = val_loss; or val_acc (classification), val_mae, val_r2
    mode: str = "auto"  # min | max | auto (from the metric)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    log_every: int = 20  # steps between loss readouts in the live progress (a host sync each)
    progress: str = "auto"  # auto (rich on a terminal, plain lines otherwise) | rich | plain | none
    # 32 | bf16-mixed (bfloat16 autocast; CPU or CUDA) | 16-mixed (float16 autocast and a
    # gradient scaler; CUDA only, refused elsewhere once the device is known)
    precision: str = "32"
    compile: bool = False  # torch.compile the model for training and evaluation
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune | ...-no-cudagraphs
    # auto: data-parallel (DDP) when torchrun or srun started several processes; ddp: DDP under
    # any such launch, one process included. batch_size and eval_batch_size are global: the sum
    # over the processes, so a config means the same maths on any number of them
    strategy: str = "auto"
    sync_batchnorm: bool = False  # DDP on CUDA: batch norm statistics over the global batch
    # auto: a job its launcher restarted (torchrun --max-restarts, a SLURM requeue) continues
    # from its run folder's last.pt; never: a restart starts a new run in a new folder
    resume: str = "auto"
    # optimizer steps every N batches, on the gradient of their union: the same step as one
    # batch N times as large (mean-reduced losses), at 1/N of the memory
    accumulate: int = 1
    # an exponential moving average of the weights (e.g. 0.999), updated after every optimizer
    # step; validation, best.pt, test, eval, predict and export use it. null = off
    ema_decay: Optional[float] = None
    # at most this many batches of train, val and test per epoch (quick partial epochs)
    limit_batches: Optional[int] = None
    # train on the first N batches of the training set, in the same order every epoch, and
    # validate on them: a model that can learn drives their loss towards zero. 0 = off
    overfit_batches: int = 0
    # gradient flow and layer health per epoch (diagnostics.csv, gradflow.png): auto = on for a
    # model of at most 10 layers with parameters. Any: a bool or "auto"
    diagnostics: Any = "auto"

    def check(self, v: Checker) -> None:
        v.at_least("epochs", self.epochs, 1)
        v.at_least("batch_size", self.batch_size, 1)
        v.at_least("eval_batch_size", self.eval_batch_size, 1)
        v.check(bool(DEVICE_PATTERN.match(self.device)), "device", self.device,
                "auto, cpu, cuda, cuda:N or mps")
        if self.grad_clip is not None:
            v.positive("grad_clip", self.grad_clip)
        v.check(self.threads in (None, "auto") or (type(self.threads) is int and self.threads >= 1),
                "threads", self.threads, "null (one per core), auto, or a number >= 1")
        v.one_of("mode", self.mode, ("auto", "min", "max"))
        monitors = sorted({"auto"} | {m for ms in MONITORS.values() for m in ms})
        v.one_of("monitor", self.monitor, monitors)
        v.at_least("log_every", self.log_every, 1)
        v.one_of("progress", self.progress, ("auto", "rich", "plain", "none"))
        v.one_of("precision", self.precision, PRECISIONS)
        v.one_of("compile_mode", self.compile_mode, COMPILE_MODES)
        v.one_of("strategy", self.strategy, STRATEGIES)
        v.one_of("resume", self.resume, ("auto", "never"))
        v.at_least("accumulate", self.accumulate, 1)
        if self.ema_decay is not None:
            v.check(0 < self.ema_decay < 1, "ema_decay", self.ema_decay,
                    "must be in (0, 1), e.g. 0.999; null = off")
        v.at_least("limit_batches", self.limit_batches, 1)
        v.at_least("overfit_batches", self.overfit_batches, 0)
        v.check(not (self.overfit_batches and self.limit_batches), "overfit_batches",
                self.overfit_batches, "set trainer.overfit_batches or trainer.limit_batches, not both")
        v.check(self.diagnostics == "auto" or isinstance(self.diagnostics, bool), "diagnostics",
                self.diagnostics, "must be auto, true or false")
        super().check(v)  # early_stopping


@option("logger", "csv", "tensorboard")
@dataclass
class LoggerConfig(Options):
    """One metric logger. ``logger=tensorboard`` or ``logger=[csv,tensorboard]`` selects them;
    each sits in the ``logger`` node under its name, and metrics.csv is always among them."""

    name: str = MISSING


@option("logger", "mlflow")
@dataclass
class MlflowLoggerConfig(Options):
    """``logger=mlflow``: params, metrics per epoch, the test metrics and the run folder's files
    in an MLflow run, whose id run.yaml keeps (``dltrain resume`` continues it)."""

    name: str = MISSING
    # null = a SQLite store in outputs/ (outputs/mlflow.db, artifacts in outputs/mlartifacts),
    # resolved against the current directory when the run starts; or http://host:5000, ...
    tracking_uri: Optional[str] = None
    experiment: str = "dltrain"
    log_model: bool = False  # also checkpoints/best.pt as an artifact
    # added to dltrain's own tags; a new key on the command line: +logger.mlflow.tags.team=vision
    tags: Dict[str, str] = field(default_factory=dict)

    def check(self, v: Checker) -> None:
        v.check(bool(self.experiment.strip()), "experiment", self.experiment, "must name an experiment")
        v.check(self.tracking_uri is None or bool(self.tracking_uri.strip()), "tracking_uri",
                self.tracking_uri, "a URI (sqlite:///mlflow.db, http://host:5000), or null for "
                "the local store outputs/mlflow.db")


WANDB_MODES = ("online", "offline", "disabled")


@option("logger", "wandb")
@dataclass
class WandbLoggerConfig(Options):
    """``logger=wandb``: the same as MLflow in a Weights & Biases run, offline unless asked
    (``wandb sync`` uploads it later); run.yaml keeps its id for ``dltrain resume``."""

    name: str = MISSING
    project: str = "dltrain"
    entity: Optional[str] = None  # null = W&B's default entity
    # null = the WANDB_MODE environment variable, else offline
    mode: Optional[str] = None
    dir: Optional[str] = None  # W&B's wandb/ folder goes here; null = inside the run folder
    log_model: bool = False  # also checkpoints/best.pt among the run's files
    tags: List[str] = field(default_factory=list)

    def check(self, v: Checker) -> None:
        v.check(bool(self.project.strip()), "project", self.project, "must name a project")
        if self.mode is not None:
            v.one_of("mode", self.mode, WANDB_MODES)


def default_loggers() -> Dict[str, Any]:
    return {"csv": LoggerConfig(name="csv")}


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    activation: ActivationConfig = MISSING
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = MISSING
    sched: SchedConfig = field(default_factory=SchedConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    data: DataConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # logger name -> its options (see LoggerConfig); typed by name in load.py, so that each
    # logger's dataclass can have options of its own
    logger: Dict[str, Any] = field(default_factory=default_loggers)
