"""The workloads of issue 9, each a list of dltrain overrides: every approach trains the model,
the data, the optimizer and the initial weights that ``dltrain OVERRIDES`` builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

CLASSES = 10
# the validation and test splits are not timed; 1 % each keeps their (untimed) passes short
HELD_OUT = 0.01
# the maths every workload shares: cross-entropy, Adam 1e-3, no schedule, no regularization
COMMON = ("loss=cross_entropy", "optim=adam", "optim.lr=0.001", "sched=none",
          "regularization=none", "activation=relu", "trainer.seed=0",
          "trainer.grad_clip=null", "trainer.early_stopping.patience=null")


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    overrides: Tuple[str, ...]  # the model and the data
    batch_size: int
    epochs: int
    train_size: int = 0  # synthetic data: the training split's size; 0 = the data set's own
    quick_train_size: int = 0
    quick_epochs: int = 0

    def dltrain_overrides(self, *, quick: bool, threads: int, progress: str,
                          device: str = "cpu", epochs_scale: int = 1) -> List[str]:
        size = self.quick_train_size if quick else self.train_size
        epochs = (self.quick_epochs if quick else self.epochs) * epochs_scale
        data = []
        if size:
            data = [f"data.num_samples={num_samples(size, HELD_OUT)}",
                    f"data.val_fraction={HELD_OUT}", f"data.test_fraction={HELD_OUT}",
                    f"data.num_classes={CLASSES}", "data.seed=0", "data.split_seed=0"]
        return [*self.overrides, *data, *COMMON, f"trainer.device={device}",
                f"trainer.batch_size={self.batch_size}",
                f"trainer.epochs={epochs}", f"trainer.threads={threads}",
                f"trainer.progress={progress}"]

    def expected_train_size(self, quick: bool) -> int:
        """The training split's size (0 where the data set fixes it)."""
        return self.quick_train_size if quick else self.train_size


def num_samples(train_size: int, held_out: float, classes: int = CLASSES) -> int:
    """The ``data.num_samples`` whose training split has ``train_size`` samples when validation
    and test each take ``held_out``. dltrain's synthetic classes are balanced and its split is
    stratified, rounding each class's share with round() (dltrain.data.prepare.split_indices)."""
    if train_size % classes:
        raise ValueError(f"train_size {train_size} is not a multiple of {classes} classes")
    per_class = train_size // classes
    n = per_class
    while n - 2 * round(n * held_out) != per_class:
        n += 1
        if n > 2 * per_class + 10:
            raise ValueError(f"no class size leaves {per_class} training samples at {held_out}")
    return n * classes


IMAGE = ("data=synthetic", "data.shape=[1,28,28]")
WORKLOADS: Dict[str, Workload] = {w.name: w for w in (
    Workload("mlp", "MLP 784-256-128-10, 60k samples, batch 128, 1 epoch",
             ("model=mlp", "model.hidden_sizes=[256,128]", *IMAGE), 128, 1, 60_000, 6_000, 1),
    Workload("cnn", "CNN channels [16,32], 60k 1x28x28, batch 128, 1 epoch",
             ("model=cnn", "model.channels=[16,32]", "model.kernel_size=3", "model.hidden_size=0",
              *IMAGE), 128, 1, 60_000, 3_000, 1),
    Workload("lstm", "LSTM 128 on 28x28 sequences, 20k samples, batch 128, 1 epoch",
             ("model=lstm", "model.hidden_size=128", "model.num_layers=1",
              "model.bidirectional=false", "data=synthetic", "data.shape=[28,28]"),
             128, 1, 20_000, 2_000, 1),
    Workload("tiny", "tiny MLP 64-32-10 on digits, batch 32, 20 epochs",
             ("model=mlp", "model.hidden_sizes=[32]", "data=digits"), 32, 20, 0, 0, 2),
)}
