"""Typed schema for every config group, and the one place where a config is validated.

Each option of a config group (``model=lstm``, ``optim=sgd``) has a dataclass here. Hydra gets
them through the ConfigStore (so a typo or a wrong type in an override fails while composing),
and :func:`load_config` turns any plain mapping - Hydra's composed config or a YAML file read
back from a run folder - into these dataclasses, picking each node's class by its ``name``.
That mapping is the only way a config becomes objects: a ``_target_`` or any key the schema does
not know is refused, so no YAML file can make dltrain call arbitrary code.

Nothing here imports torch: ``--help`` and config errors answer without it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain.errors import UserError
from dltrain.registry import unknown_name

TASKS = ("classification", "regression")

# field metadata of a key that names a file or folder: a run resolves it to an absolute path
# when it starts, so that its folder can be evaluated, replayed and resumed from anywhere
PATH = {"path": True}


# ---------------------------------------------------------------------------------------------
# model
@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden_sizes: List[int] = field(default_factory=lambda: [256, 128])


@dataclass
class CNNConfig(ModelConfig):
    name: str = "cnn"
    channels: List[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    # width of the fully connected layer between the conv stack and the output; 0 = none
    hidden_size: int = 128


@dataclass
class RecurrentConfig(ModelConfig):
    name: str = MISSING
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False


@dataclass
class RNNConfig(RecurrentConfig):
    name: str = "rnn"
    # the cell's own non-linearity (PyTorch's nn.RNN allows only these two); the `activation`
    # group acts in the output head of every recurrent model
    nonlinearity: str = "tanh"


# ---------------------------------------------------------------------------------------------
# activation
@dataclass
class ActivationConfig:
    name: str = MISSING


@dataclass
class LeakyReLUConfig(ActivationConfig):
    name: str = "leaky_relu"
    negative_slope: float = 0.01


@dataclass
class ELUConfig(ActivationConfig):
    name: str = "elu"
    alpha: float = 1.0


@dataclass
class GELUConfig(ActivationConfig):
    name: str = "gelu"
    approximate: str = "none"


# ---------------------------------------------------------------------------------------------
# loss
@dataclass
class LossConfig:
    # "auto" picks the task's natural loss: cross-entropy for classification, MSE for regression
    name: str = "auto"


@dataclass
class CrossEntropyConfig(LossConfig):
    name: str = "cross_entropy"
    # 0 = plain cross-entropy, the loss other tools report. When > 0, training uses it, but
    # val/test losses (and so the monitor) stay plain cross-entropy, comparable across runs
    label_smoothing: float = 0.0


@dataclass
class HuberConfig(LossConfig):
    name: str = "huber"
    delta: float = 1.0


# the losses each task accepts; "auto" resolves to the first one
LOSSES_FOR_TASK = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "huber", "l1"),
}


# ---------------------------------------------------------------------------------------------
# optim (weight decay is not here: it belongs to `regularization`)
@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 1e-3


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class RMSpropConfig(OptimConfig):
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0


# ---------------------------------------------------------------------------------------------
# sched
@dataclass
class SchedConfig:
    name: str = "none"


@dataclass
class StepSchedConfig(SchedConfig):
    name: str = "step"
    step_size: int = 10  # epochs
    gamma: float = 0.1


@dataclass
class CosineSchedConfig(SchedConfig):
    name: str = "cosine"
    eta_min: float = 0.0  # the cosine runs from optim.lr to eta_min over trainer.epochs


@dataclass
class PlateauSchedConfig(SchedConfig):
    name: str = "plateau"  # watches trainer.monitor
    factor: float = 0.1
    patience: int = 5
    min_lr: float = 0.0


@dataclass
class OneCycleSchedConfig(SchedConfig):
    name: str = "onecycle"  # stepped every batch; peaks at max_lr (null = optim.lr)
    max_lr: Optional[float] = None
    pct_start: float = 0.3
    # torch cycles momentum (or Adam's beta1) between 0.85 and 0.95 by default; here only when
    # asked, so optim.momentum / optim.betas mean what they say
    cycle_momentum: bool = False


# ---------------------------------------------------------------------------------------------
# regularization, data, trainer
@dataclass
class RegularizationConfig:
    dropout: float = 0.0
    # given to the optimizer for weights only (not biases, norms); null = the optimizer's own
    # torch default (0.01 for AdamW, 0 for the others). Coupled L2 for SGD, Adam and RMSprop,
    # decoupled for AdamW
    weight_decay: Optional[float] = None
    l1: float = 0.0  # coefficient of the L1 penalty on weights, added to the loss
    batch_norm: bool = False


@dataclass
class DataConfig:
    name: str = MISSING
    # classification | regression | auto (decided by the data set)
    task: str = "auto"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # the split is fixed by its own seed, so changing trainer.seed never reshuffles the test set
    split_seed: int = 0


@dataclass
class TorchvisionDataConfig(DataConfig):
    """mnist, fashion_mnist, cifar10: the official test set is the test split (test_fraction is
    not used); val_fraction of the official training set is held out for validation."""

    task: str = "classification"
    # null = $DLTRAIN_DATA, else ~/.cache/dltrain/data
    root: Optional[str] = field(default=None, metadata=PATH)
    download: bool = True
    augment: bool = False  # random crop with padding + horizontal flip, on whole batches
    val_fraction: float = 0.1


@dataclass
class SineDataConfig(DataConfig):
    """Forecast the next ``horizon`` values of noisy sine waves from a window of ``seq_len``."""

    task: str = "regression"
    num_samples: int = 4000
    seq_len: int = 50
    horizon: int = 1
    noise: float = 0.05


@dataclass
class AddingDataConfig(DataConfig):
    """The adding problem: the sum of the two marked values of a length-``seq_len`` sequence."""

    task: str = "regression"
    num_samples: int = 10000
    seq_len: int = 100


@dataclass
class CSVDataConfig(DataConfig):
    path: str = field(default=MISSING, metadata=PATH)
    target: str = MISSING  # the column to predict; every other column is a feature


@dataclass
class ImageFolderDataConfig(DataConfig):
    task: str = "classification"
    path: str = field(default=MISSING, metadata=PATH)  # one sub-folder per class
    image_size: int = 32
    grayscale: bool = False
    # decode everything once into memory when the uint8 tensors fit in this many MiB,
    # else stream from disk with a DataLoader
    max_memory_mb: int = 2048
    num_workers: int = 2


@dataclass
class NpzDataConfig(DataConfig):
    # arrays x and y; optional x_val, y_val, x_test, y_test
    path: str = field(default=MISSING, metadata=PATH)


@dataclass
class SyntheticDataConfig(DataConfig):
    """Learnable classification data of any shape, for benchmarks and quick checks."""

    task: str = "classification"
    shape: List[int] = field(default_factory=lambda: [1, 28, 28])
    num_samples: int = 4096
    num_classes: int = 10
    seed: int = 0


@dataclass
class EarlyStoppingConfig:
    patience: Optional[int] = None  # epochs without improvement of trainer.monitor; null = off
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 1024
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0
    deterministic: Optional[bool] = None  # null = on for CPU, off for CUDA
    # CPU threads for torch's kernels; null = torch's default (one per core). On a busy machine
    # fewer threads than cores avoids threads spinning while they wait for a core
    threads: Optional[int] = None
    grad_clip: Optional[float] = None  # max global gradient norm; null = no clipping
    monitor: str = "auto"  # auto = val_loss; or val_acc (classification), val_mae, val_r2
    mode: str = "auto"  # min | max | auto (from the metric)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    log_every: int = 20  # steps between loss readouts in the live progress (a host sync each)
    progress: str = "auto"  # auto (rich on a terminal, plain lines otherwise) | rich | plain | none


@dataclass
class LoggerConfig:
    # metrics.csv is always written; "tensorboard" adds event files in the run folder
    name: str = "csv"


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
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# Each option of each group, by the name its YAML file and its registry entry carry.
GROUPS: Dict[str, Dict[str, type]] = {
    "model": {
        "mlp": MLPConfig,
        "cnn": CNNConfig,
        "rnn": RNNConfig,
        "lstm": RecurrentConfig,
        "gru": RecurrentConfig,
    },
    "activation": {
        "relu": ActivationConfig,
        "sigmoid": ActivationConfig,
        "tanh": ActivationConfig,
        "leaky_relu": LeakyReLUConfig,
        "gelu": GELUConfig,
        "elu": ELUConfig,
        "silu": ActivationConfig,
    },
    "loss": {
        "auto": LossConfig,
        "cross_entropy": CrossEntropyConfig,
        "mse": LossConfig,
        "huber": HuberConfig,
        "l1": LossConfig,
    },
    "optim": {
        "sgd": SGDConfig,
        "adam": AdamConfig,
        "adamw": AdamConfig,
        "rmsprop": RMSpropConfig,
    },
    "sched": {
        "none": SchedConfig,
        "step": StepSchedConfig,
        "cosine": CosineSchedConfig,
        "plateau": PlateauSchedConfig,
        "onecycle": OneCycleSchedConfig,
    },
    "data": {
        "digits": DataConfig,
        "diabetes": DataConfig,
        "mnist": TorchvisionDataConfig,
        "fashion_mnist": TorchvisionDataConfig,
        "cifar10": TorchvisionDataConfig,
        "sine": SineDataConfig,
        "adding": AddingDataConfig,
        "csv": CSVDataConfig,
        "image_folder": ImageFolderDataConfig,
        "npz": NpzDataConfig,
        "synthetic": SyntheticDataConfig,
    },
    "logger": {
        "csv": LoggerConfig,
        "tensorboard": LoggerConfig,
    },
}

# The task of the data sets whose task does not depend on the user's files.
FIXED_TASKS = {
    "digits": "classification",
    "diabetes": "regression",
    "mnist": "classification",
    "fashion_mnist": "classification",
    "cifar10": "classification",
    "sine": "regression",
    "adding": "regression",
    "image_folder": "classification",
    "synthetic": "classification",
}


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore (``configs/<group>/<name>.yaml`` extends it)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, options in GROUPS.items():
        for name, cls in options.items():
            cs.store(group=f"schema/{group}", name=name, node=cls(name=name))


# groups a saved config may leave out (older run folders, hand-written YAML), and their default
_OPTIONAL_GROUPS = {"loss": "auto", "sched": "none", "logger": "csv"}


# ---------------------------------------------------------------------------------------------
# mapping → dataclasses
def load_config(raw: Mapping[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a plain mapping (or a DictConfig).

    Raises :class:`UserError` naming the key and what is allowed.
    """
    if OmegaConf.is_config(raw):
        raw = OmegaConf.to_container(raw, resolve=True)
    if not isinstance(raw, Mapping):
        raise UserError(f"a config must be a mapping of groups, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "hydra"}
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise UserError(
            f"unknown config key(s) {', '.join(unknown)}; allowed: "
            + ", ".join(f.name for f in dataclasses.fields(TrainConfig))
        )
    nodes: Dict[str, Any] = {}
    for group, options in GROUPS.items():
        node = raw.get(group)
        if node is None and group in _OPTIONAL_GROUPS:
            node = {"name": _OPTIONAL_GROUPS[group]}
        if not isinstance(node, Mapping) or "name" not in node:
            raise UserError(f"config group '{group}' is missing; choose one of: {', '.join(options)}")
        name = node["name"]
        if name not in options:
            raise UserError(unknown_name(group, name, options))
        nodes[group] = _typed(group, options[name](name=name), node)
    for key, cls in (("regularization", RegularizationConfig), ("trainer", TrainerConfig)):
        nodes[key] = _typed(key, cls(), raw.get(key) or {})
    config = TrainConfig(**nodes)
    validate(config)
    return config


def _typed(key: str, default: Any, values: Mapping[str, Any]) -> Any:
    """Merge ``values`` into the dataclass instance ``default``: unknown keys and wrong types fail."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(default), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        full_key = f"{key}.{e.full_key}" if getattr(e, "full_key", None) else key
        message = str(e).splitlines()[0]
        if "missing mandatory value" in message:
            raise UserError(f"{full_key} is required: add {full_key}=... to the command") from None
        if "not in" in message or "Key '" in message:
            # the node that lacks the key may be nested (trainer.early_stopping)
            node_type = getattr(e, "object_type", None)
            if not (isinstance(node_type, type) and dataclasses.is_dataclass(node_type)):
                node_type = type(default)
            allowed = ", ".join(f.name for f in dataclasses.fields(node_type))
            raise UserError(f"{full_key}: unknown key; allowed here: {allowed}") from None
        raise UserError(f"{full_key}: {message}") from None


def to_dict(config: TrainConfig) -> Dict[str, Any]:
    """The plain-dict form saved into checkpoints and run folders."""
    return dataclasses.asdict(config)


def resolve_loss(loss: str, task: str) -> str:
    """The loss a run uses for ``task``; raises if ``loss`` does not fit it."""
    allowed = LOSSES_FOR_TASK[task]
    if loss == "auto":
        return allowed[0]
    if loss not in allowed:
        raise UserError(
            f"loss={loss} does not fit a {task} task; use one of: {', '.join(allowed)} "
            "(or leave `loss` out for the task's default)"
        )
    return loss


MONITORS = {
    "classification": {"val_loss": "min", "val_acc": "max"},
    "regression": {"val_loss": "min", "val_mae": "min", "val_r2": "max"},
}


def resolve_monitor(trainer: TrainerConfig, task: str) -> tuple[str, str]:
    """(metric, mode) watched for best.pt, early stopping and the plateau schedule."""
    allowed = MONITORS[task]
    monitor = trainer.monitor
    if monitor == "auto":
        # the loss is a smoother guide than accuracy on small validation sets
        monitor = "val_loss"
    if monitor not in allowed:
        raise UserError(
            f"trainer.monitor={monitor} is not a metric of a {task} task; "
            f"use one of: {', '.join(allowed)}"
        )
    mode = allowed[monitor] if trainer.mode == "auto" else trainer.mode
    return monitor, mode


# ---------------------------------------------------------------------------------------------
# validation: every range and cross-field rule, in one place
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class _Checker:
    def __init__(self) -> None:
        self.errors: List[str] = []

    def check(self, ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            self.errors.append(f"{key}={value!r} is not allowed: {allowed}")

    def positive(self, key: str, value: float) -> None:
        self.check(value > 0, key, value, "must be > 0")

    def at_least(self, key: str, value: float, low: float) -> None:
        self.check(value >= low, key, value, f"must be >= {low}")

    def fraction(self, key: str, value: float, *, closed_high: bool = False) -> None:
        ok = 0 <= value <= 1 if closed_high else 0 <= value < 1
        self.check(ok, key, value, f"must be in [0, 1{']' if closed_high else ')'}")

    def one_of(self, key: str, value: Any, options: Any) -> None:
        self.check(value in options, key, value, f"must be one of {', '.join(map(str, options))}")


def validate(c: TrainConfig) -> None:
    """Raise one :class:`UserError` listing every invalid value in ``c``."""
    v = _Checker()
    m = c.model
    if isinstance(m, MLPConfig):
        v.check(len(m.hidden_sizes) > 0 and all(h > 0 for h in m.hidden_sizes),
                "model.hidden_sizes", m.hidden_sizes, "a non-empty list of positive widths")
    if isinstance(m, CNNConfig):
        v.check(len(m.channels) > 0 and all(ch > 0 for ch in m.channels),
                "model.channels", m.channels, "a non-empty list of positive channel counts")
        v.check(m.kernel_size >= 1 and m.kernel_size % 2 == 1, "model.kernel_size", m.kernel_size,
                "must be an odd number >= 1 (so that padding keeps the size)")
        v.at_least("model.hidden_size", m.hidden_size, 0)
    if isinstance(m, RecurrentConfig):
        v.positive("model.hidden_size", m.hidden_size)
        v.at_least("model.num_layers", m.num_layers, 1)
    if isinstance(m, RNNConfig):
        v.one_of("model.nonlinearity", m.nonlinearity, ("tanh", "relu"))

    a = c.activation
    if isinstance(a, LeakyReLUConfig):
        v.at_least("activation.negative_slope", a.negative_slope, 0)
    if isinstance(a, ELUConfig):
        v.positive("activation.alpha", a.alpha)
    if isinstance(a, GELUConfig):
        v.one_of("activation.approximate", a.approximate, ("none", "tanh"))

    if isinstance(c.loss, CrossEntropyConfig):
        v.fraction("loss.label_smoothing", c.loss.label_smoothing)
    if isinstance(c.loss, HuberConfig):
        v.positive("loss.delta", c.loss.delta)

    o = c.optim
    v.positive("optim.lr", o.lr)
    if isinstance(o, SGDConfig):
        v.fraction("optim.momentum", o.momentum)
        v.check(not o.nesterov or o.momentum > 0, "optim.nesterov", o.nesterov,
                "nesterov needs optim.momentum > 0")
    if isinstance(o, AdamConfig):
        v.check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas", o.betas,
                "two numbers in [0, 1)")
        v.positive("optim.eps", o.eps)
    if isinstance(o, RMSpropConfig):
        v.fraction("optim.alpha", o.alpha)
        v.fraction("optim.momentum", o.momentum)
        v.positive("optim.eps", o.eps)

    s = c.sched
    if isinstance(s, StepSchedConfig):
        v.at_least("sched.step_size", s.step_size, 1)
        v.check(0 < s.gamma <= 1, "sched.gamma", s.gamma, "must be in (0, 1]")
    if isinstance(s, CosineSchedConfig):
        v.check(0 <= s.eta_min < o.lr, "sched.eta_min", s.eta_min, "must be in [0, optim.lr)")
    if isinstance(s, PlateauSchedConfig):
        v.check(0 < s.factor < 1, "sched.factor", s.factor, "must be in (0, 1)")
        v.at_least("sched.patience", s.patience, 0)
        v.at_least("sched.min_lr", s.min_lr, 0)
    if isinstance(s, OneCycleSchedConfig):
        if s.max_lr is not None:
            v.positive("sched.max_lr", s.max_lr)
        v.check(0 < s.pct_start < 1, "sched.pct_start", s.pct_start, "must be in (0, 1)")

    r = c.regularization
    v.fraction("regularization.dropout", r.dropout)
    if r.weight_decay is not None:
        v.at_least("regularization.weight_decay", r.weight_decay, 0)
    v.at_least("regularization.l1", r.l1, 0)

    d = c.data
    v.one_of("data.task", d.task, ("auto",) + TASKS)
    v.check(0 < d.val_fraction < 1, "data.val_fraction", d.val_fraction, "must be in (0, 1)")
    v.check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "must be in (0, 1)")
    v.check(d.val_fraction + d.test_fraction < 1, "data.val_fraction + data.test_fraction",
            d.val_fraction + d.test_fraction, "must leave some data for training (< 1)")
    if isinstance(d, TorchvisionDataConfig) and d.augment and d.name != "cifar10":
        v.errors.append(f"data.augment=true is not allowed: augmentation is for cifar10, not {d.name}")
    if isinstance(d, (SineDataConfig, AddingDataConfig)):
        v.at_least("data.seq_len", d.seq_len, 2)
        v.at_least("data.num_samples", d.num_samples, 10)
    if isinstance(d, SineDataConfig):
        v.at_least("data.horizon", d.horizon, 1)
        v.at_least("data.noise", d.noise, 0)
    if isinstance(d, (CSVDataConfig, ImageFolderDataConfig, NpzDataConfig)):
        v.check(bool(d.path), "data.path", d.path, f"data={d.name} needs data.path=FILE")
    if isinstance(d, CSVDataConfig):
        v.check(bool(d.target), "data.target", d.target, "data=csv needs data.target=COLUMN")
    if isinstance(d, ImageFolderDataConfig):
        v.at_least("data.image_size", d.image_size, 4)
        v.at_least("data.max_memory_mb", d.max_memory_mb, 0)
        v.at_least("data.num_workers", d.num_workers, 0)
    if isinstance(d, SyntheticDataConfig):
        v.check(1 <= len(d.shape) <= 3 and all(n > 0 for n in d.shape), "data.shape", d.shape,
                "1 to 3 positive sizes: [F] (table), [T, F] (sequence) or [C, H, W] (image)")
        v.at_least("data.num_samples", d.num_samples, 10)
        v.at_least("data.num_classes", d.num_classes, 2)
    fixed = FIXED_TASKS.get(d.name)
    if fixed and d.task not in ("auto", fixed):
        v.errors.append(f"data.task={d.task!r} is not allowed: data={d.name} is a {fixed} set")

    t = c.trainer
    v.at_least("trainer.epochs", t.epochs, 1)
    v.at_least("trainer.batch_size", t.batch_size, 1)
    v.at_least("trainer.eval_batch_size", t.eval_batch_size, 1)
    v.check(bool(DEVICE_PATTERN.match(t.device)), "trainer.device", t.device,
            "auto, cpu, cuda, cuda:N or mps")
    if t.grad_clip is not None:
        v.positive("trainer.grad_clip", t.grad_clip)
    if t.threads is not None:
        v.at_least("trainer.threads", t.threads, 1)
    v.one_of("trainer.mode", t.mode, ("auto", "min", "max"))
    known_monitors = sorted({"auto"} | {k for ms in MONITORS.values() for k in ms})
    v.one_of("trainer.monitor", t.monitor, known_monitors)
    if t.early_stopping.patience is not None:
        v.at_least("trainer.early_stopping.patience", t.early_stopping.patience, 1)
    v.at_least("trainer.early_stopping.min_delta", t.early_stopping.min_delta, 0)
    v.at_least("trainer.log_every", t.log_every, 1)
    v.one_of("trainer.progress", t.progress, ("auto", "rich", "plain", "none"))

    task = d.task if d.task != "auto" else fixed
    if task and not v.errors:
        for check in (lambda: resolve_loss(c.loss.name, task), lambda: resolve_monitor(t, task)):
            try:
                check()
            except UserError as e:
                v.errors.append(str(e))

    if v.errors:
        raise UserError("invalid config:\n  " + "\n  ".join(v.errors))


def keys_of_class(class_name: str) -> List[str]:
    """The keys of the schema dataclass called ``class_name`` (for error messages)."""
    for cls in (TrainConfig, RegularizationConfig, TrainerConfig, EarlyStoppingConfig,
                *(c for options in GROUPS.values() for c in options.values())):
        if cls.__name__ == class_name:
            return [f.name for f in dataclasses.fields(cls)]
    return []


def resolve_paths(config: TrainConfig) -> Dict[str, str]:
    """Make every path key of ``config`` absolute (relative to the current directory), in
    place; returns the values as they were typed, by dotted key."""
    import os

    typed = {}
    for group in dataclasses.fields(config):
        node = getattr(config, group.name)
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.metadata.get("path") and isinstance(value, str) and value:
                typed[f"{group.name}.{f.name}"] = value
                setattr(node, f.name, os.path.abspath(os.path.expanduser(value)))
    return typed


def fields_of(node: Any) -> Dict[str, Any]:
    """A schema node's values without its ``name``: the keyword arguments of its builder."""
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "name"}
