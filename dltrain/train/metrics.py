"""Running sums of loss and task metrics, kept on the device and read once per log point.

A step only keeps references to its loss, outputs and targets (no kernel, no host sync); every
``FLUSH_STEPS`` batches, or sooner when the kept outputs grow large, one batched reduction folds
them into the sums. On a small model the per-step metric kernels cost more than the step itself
would lose to them: six tiny launches a step, against four per flush. The flush points depend
only on the batch sequence, and a checkpoint inside an epoch keeps the unflushed batches, so a
resumed epoch adds the same numbers in the same order as one that never stopped.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Dict, List, Optional

import torch

from dltrain.data.base import DataInfo

if TYPE_CHECKING:
    from dltrain.distributed import Dist

FLUSH_STEPS = 32
FLUSH_ELEMENTS = 1 << 22  # kept output values (16 MiB of float32) that force a flush


class MetricSums:
    """Sums over the batches of one pass; :meth:`compute` is the only host sync."""

    def __init__(self, info: DataInfo, device: torch.device) -> None:
        self.classification = info.task == "classification"
        self.n = 0  # batch sizes are known on the host: counting them costs no sync
        self.loss = torch.zeros((), device=device)
        if self.classification:
            self.correct = torch.zeros((), device=device, dtype=torch.long)
        else:
            k = info.num_outputs
            self.std = torch.tensor(info.target_std or (1.0,) * k, device=device)
            self.abs_err = torch.zeros(k, device=device)
            self.sq_err = torch.zeros(k, device=device)
            self.y_sum = torch.zeros(k, device=device)
            self.y_sq = torch.zeros(k, device=device)
        self.pending: Dict[str, List[torch.Tensor]] = {"loss": [], "out": [], "y": []}
        self._pending_elements = 0

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.n += y.shape[0]
        self.pending["loss"].append(loss.detach())
        self.pending["out"].append(out.detach())
        self.pending["y"].append(y)
        self._pending_elements += out.numel()
        if len(self.pending["y"]) >= FLUSH_STEPS or self._pending_elements >= FLUSH_ELEMENTS:
            self._fold(self)

    def _fold(self, into: "MetricSums") -> None:
        """Add the kept batches to ``into``'s sums (self, or a copy that :meth:`compute` reads
        without disturbing the flush points) and, when ``into`` is self, forget them."""
        outs, ys, losses = self.pending["out"], self.pending["y"], self.pending["loss"]
        if not ys:
            return
        # each loss is a batch mean: weigh it by its batch size. Sizes are host numbers, and a
        # tensor made of them would be a host-to-device copy (a sync on CUDA): sum the runs of
        # equal sizes (all batches but an epoch's last) and scale each run instead
        total = into.loss
        start = 0
        for size, run in itertools.groupby(y.shape[0] for y in ys):
            count = len(list(run))
            total = total + torch.stack(losses[start:start + count]).float().sum() * size
            start += count
        into.loss = total
        out, y = torch.cat(outs), torch.cat(ys)
        if self.classification:
            into.correct = into.correct + (out.argmax(dim=1) == y).sum()
        else:
            err = out.float() - y
            into.abs_err = into.abs_err + err.abs().sum(0)
            into.sq_err = into.sq_err + err.square().sum(0)
            into.y_sum = into.y_sum + y.sum(0)
            into.y_sq = into.y_sq + y.square().sum(0)
        if into is self:
            self.pending = {"loss": [], "out": [], "y": []}
            self._pending_elements = 0

    def state_dict(self) -> Dict[str, object]:
        """The sums and the batches not yet folded in (for a checkpoint taken inside an epoch)."""
        state: Dict[str, object] = {k: v.detach().clone() for k, v in vars(self).items()
                                    if torch.is_tensor(v) and k != "std"}
        state["n"] = torch.tensor(self.n)
        state["pending"] = {k: [t.clone() for t in v] for k, v in self.pending.items()}
        return state

    def load_state_dict(self, state: Dict[str, object]) -> None:
        for key, value in state.items():
            if key == "n":
                self.n = int(value)
            elif key == "pending":
                device = self.loss.device
                self.pending = {k: [t.to(device) for t in v] for k, v in value.items()}
                self._pending_elements = sum(t.numel() for t in self.pending["out"])
            else:
                setattr(self, key, value.to(getattr(self, key).device))

    def _folded(self) -> "MetricSums":
        """A copy with the kept batches folded into its sums: reading the metrics this way never
        moves the flush points of the original."""
        sums = object.__new__(MetricSums)
        sums.__dict__.update(self.__dict__)
        self._fold(sums)
        sums.pending = {"loss": [], "out": [], "y": []}
        return sums

    def _sums(self) -> List[str]:
        return ["loss", "correct"] if self.classification else ["loss", "abs_err", "sq_err", "y_sum", "y_sq"]

    def _reduce(self, dist: "Dist") -> None:
        """Add up the sums of every process (after folding: nothing pending)."""
        count = torch.tensor(float(self.n), device=self.loss.device)
        tensors = [getattr(self, name).clone() for name in self._sums()] + [count]
        dist.all_reduce(tensors)
        for name, tensor in zip(self._sums(), tensors):
            setattr(self, name, tensor)
        self.n = int(tensors[-1].item())

    def gathered(self, dist: "Dist") -> Dict[str, object]:
        """:meth:`state_dict` of the sums of every process (a collective), for rank 0's
        checkpoint inside an epoch; a resumed epoch loads them into rank 0 only."""
        sums = self._folded()
        sums._reduce(dist)
        return sums.state_dict()

    def running(self) -> Dict[str, float]:
        """The training metrics so far in this epoch (a host sync: call at log points only)."""
        return self.compute("train")

    def compute(self, prefix: str, dist: Optional["Dist"] = None,
                extra: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, float]:
        """The metrics of the batches added so far; with a distributed ``dist``, of the batches
        every process added (a collective: all processes call it). ``extra``: device scalars
        (the same in every process) read in the same host sync and returned under their keys."""
        sums = self._folded()
        if dist is not None and dist.distributed:
            sums._reduce(dist)
        n = max(sums.n, 1)
        extra = extra or {}
        names = list(extra)
        if self.classification:
            loss, correct, *rest = torch.stack(
                [sums.loss, sums.correct.float(), *(extra[k].float() for k in names)]).tolist()
            metrics = {f"{prefix}_loss": loss / n, f"{prefix}_acc": correct / n}
        else:
            total = sums.y_sq - sums.y_sum.square() / n
            r2 = (1 - sums.sq_err / total.clamp_min(1e-12)).mean()
            mae = (sums.abs_err * sums.std).mean() / n  # in the target's own units
            loss, mae, r2, *rest = torch.stack(
                [sums.loss, mae, r2, *(extra[k].float() for k in names)]).tolist()
            metrics = {f"{prefix}_loss": loss / n, f"{prefix}_mae": mae, f"{prefix}_r2": r2}
        return {**metrics, **dict(zip(names, rest))}
