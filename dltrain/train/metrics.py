"""Running sums of loss and task metrics, kept on the device and read once per log point."""

from __future__ import annotations

from typing import Dict

import torch

from dltrain.data.base import DataInfo


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

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        b = y.shape[0]
        self.n += b
        self.loss += loss.detach().float() * b
        out = out.detach()
        if self.classification:
            self.correct += (out.argmax(dim=1) == y).sum()
        else:
            err = out.float() - y
            self.abs_err += err.abs().sum(0)
            self.sq_err += err.square().sum(0)
            self.y_sum += y.sum(0)
            self.y_sq += y.square().sum(0)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The sums (for a checkpoint taken inside an epoch)."""
        return {k: v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)
                for k, v in vars(self).items() if k not in ("classification", "std")}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            current = getattr(self, key)
            setattr(self, key, int(value) if key == "n" else value.to(current.device))

    def running(self) -> Dict[str, float]:
        """The training metrics so far in this epoch (a host sync: call at log points only)."""
        return self.compute("train")

    def compute(self, prefix: str) -> Dict[str, float]:
        n = max(self.n, 1)
        if self.classification:
            loss, correct = torch.stack([self.loss, self.correct.float()]).tolist()
            return {f"{prefix}_loss": loss / n, f"{prefix}_acc": correct / n}
        total = self.y_sq - self.y_sum.square() / n
        r2 = (1 - self.sq_err / total.clamp_min(1e-12)).mean()
        mae = (self.abs_err * self.std).mean() / n  # in the target's own units
        loss, mae, r2 = torch.stack([self.loss, mae, r2]).tolist()
        return {f"{prefix}_loss": loss / n, f"{prefix}_mae": mae, f"{prefix}_r2": r2}
