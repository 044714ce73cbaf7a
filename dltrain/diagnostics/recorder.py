"""What :class:`Diagnostics` measures, and how cheaply.

Layers are the modules with parameters of their own (``parameters(recurse=False)``), in
``named_modules`` order, named as the model table names them (``1``, ``rnn``, ``head.0``; the
model itself, when it holds parameters, ``(model)``). A batch-norm layer is one.

Per recorded step (the loop's log steps), with no host sync: each layer's gradient norm over all
its parameters, and its relative update ``||w_new - w_old|| / ||w_old||``, added to one device
tensor per quantity. Per epoch, :meth:`Diagnostics.end_epoch` runs the probe batch through the
model in eval mode and reads the device once.

Definitions (the probe batch, the model in eval mode):

- **Attribution.** Activation modules hold no parameters: their statistics go to the nearest
  layer with parameters before them in ``named_modules`` order (the layer whose output they
  read: ``Linear`` in ``Linear → ReLU``, the batch norm in ``Linear → BatchNorm1d → ReLU``). An
  activation with no such layer before it reports under its own name.
- **Dead unit** (``dead_fraction``): ReLU, LeakyReLU, ELU, GELU and SiLU count, alike: a unit
  is dead when its activation's input is never > 0 over the whole probe batch. A unit is an
  index along dim 1 (a dense layer's feature; a conv map's channel, all positions together:
  a filter that is positive nowhere gets no weight gradient from a ReLU). For ReLU that means
  no gradient at all; the others still pass a little (the leak, ELU's exp(x), GELU's and
  SiLU's tails), so for them the figure counts units stuck on the negative side.
- **Saturated** (``saturated_fraction``): the share of all input values of a sigmoid with
  ``|x| > 4`` or of a tanh with ``|x| > 2``, the same zone (sigmoid(x) = (1 + tanh(x/2))/2),
  where the slope is below 7% of its peak (sigmoid' < 0.018, tanh' < 0.071).
- **Hidden-state gradient** (recurrent models, layer ``rnn``): ``hidden_grad_first``,
  ``_middle`` and ``_last`` are, at t = 0, T//2 and T-1, the mean over the probe samples of the
  L2 norm of d loss_i / d h_t, where h_t is the last recurrent layer's hidden state (forward
  direction) after step t and loss_i the sample's own loss (the batch-mean loss's gradient
  times the batch size), so the figure does not depend on the probe's size. It is computed on
  :meth:`dltrain.models.rnn.RecurrentNet.unrolled` with ``torch.autograd.grad``: parameters'
  ``.grad`` are left as they are. The cell's own tanh and sigmoid gates are not modules, so
  recurrent layers have no dead or saturated share.

The probe draws no random numbers (eval mode: no dropout) and changes no parameter's ``.grad``
and no batch-norm statistic; the model goes back to the mode it was in.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from dltrain.diagnostics.csv_file import QUANTITIES, Row
from dltrain.models.rnn import RecurrentNet

MAX_AUTO_LAYERS = 10  # trainer.diagnostics=auto measures models with at most this many layers
ROOT = "(model)"  # the model itself, when it holds parameters (the model table's name)
RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
SATURATION = ((nn.Sigmoid, 4.0), (nn.Tanh, 2.0))  # |input| beyond which the unit is saturated
HIDDEN_STEPS = ("hidden_grad_first", "hidden_grad_middle", "hidden_grad_last")
EPS = 1e-12  # a layer whose weights are all zero: its update ratio is ||Δw|| / EPS, not inf


def layers_with_parameters(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The modules holding parameters of their own, in ``named_modules`` order."""
    return [(name or ROOT, module) for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None]


def wanted(setting: Union[bool, str], model: nn.Module) -> bool:
    """``trainer.diagnostics``: ``auto`` measures models with at most
    :data:`MAX_AUTO_LAYERS` layers with parameters; ``true``/``false`` as given."""
    if isinstance(setting, bool):
        return setting
    text = str(setting).lower()
    if text in ("true", "false"):  # a str-typed option keeps YAML's true as text
        return text == "true"
    if text == "auto":
        return len(layers_with_parameters(model)) <= MAX_AUTO_LAYERS
    raise ValueError(f"trainer.diagnostics must be auto, true or false, not {setting!r}")


def _activation_kind(module: nn.Module) -> Optional[Tuple[str, float]]:
    """``("dead_fraction", 0)`` for the ReLU family, ``("saturated_fraction", threshold)`` for
    sigmoid and tanh, None for anything else."""
    if isinstance(module, RELU_FAMILY):
        return "dead_fraction", 0.0
    for cls, threshold in SATURATION:
        if isinstance(module, cls):
            return "saturated_fraction", threshold
    return None


class Diagnostics:
    """Gradient flow and layer health of ``model`` (see the module's docstring).

    The loop calls, at a log step: :meth:`record_grads` after backward (gradients unscaled,
    before clipping), :meth:`before_update` just before ``optimizer.step()`` and
    :meth:`after_update` right after it; at the end of an epoch :meth:`end_epoch`, which gives
    the epoch's rows. ``probe_x``/``probe_y``: a fixed batch on the model's device.
    """

    def __init__(self, model: nn.Module, probe_x: Tensor, probe_y: Tensor,
                 criterion: nn.Module) -> None:
        self.model, self.probe_x, self.probe_y, self.criterion = model, probe_x, probe_y, criterion
        self.layers = [name for name, _ in layers_with_parameters(model)]
        # the parameters, layer by layer, and which layer each belongs to: a one-hot (P, L)
        # matrix sums squared per-parameter norms into their layers in one product
        self._params: List[nn.Parameter] = []
        owner: List[int] = []
        for i, (_, module) in enumerate(layers_with_parameters(model)):
            for p in module.parameters(recurse=False):
                self._params.append(p)
                owner.append(i)
        self.device = self._params[0].device if self._params else probe_x.device
        n = len(self.layers)
        assign = torch.zeros(len(owner), n)
        assign[range(len(owner)), owner] = 1.0
        self._assign = assign.to(self.device)
        self._assign_of: Dict[Tuple[int, ...], Tensor] = {}  # rows of it, by parameters present
        self.grad_sum = torch.zeros(n, device=self.device)
        self.update_sum = torch.zeros(n, device=self.device)
        self.grad_steps = 0
        self.update_steps = 0
        self._old: Optional[List[Tensor]] = None  # the weights before the step (before_update)
        self._saved = False  # before_update ran since the last after_update
        self._activations = self._find_activations()
        self._rnn_name = (next(name for name, m in model.named_modules() if m is model.rnn)
                          if isinstance(model, RecurrentNet) else None)

    # -----------------------------------------------------------------------------------------
    # per recorded step: a few device operations, whatever the number of layers; no host sync
    def _squares(self, tensors: List[Tensor]) -> Tensor:
        """The squared L2 norm of each tensor (one ``_foreach_norm``), as one float32 vector."""
        return torch.stack(torch._foreach_norm(tensors)).float().square_()

    @torch.no_grad()
    def layer_norms(self, tensors: List[Tensor]) -> Tensor:
        """Per layer, the L2 norm over its tensors; ``tensors``: one per parameter, in order."""
        if not tensors:
            return torch.zeros(len(self.layers), device=self.device)
        return (self._squares(tensors) @ self._assign).sqrt_()

    @torch.no_grad()
    def record_grads(self) -> Tensor:
        """Adds each layer's gradient norm to the epoch's sum (a parameter with no gradient
        counts as zero); returns the global gradient norm, from the same per-tensor norms."""
        grads = [p.grad for p in self._params]
        if all(g is not None for g in grads):
            assign = self._assign
        else:  # built once per pattern of missing gradients
            present = tuple(i for i, g in enumerate(grads) if g is not None)
            grads = [grads[i] for i in present]
            assign = self._assign_of.get(present)
            if assign is None:
                assign = self._assign_of[present] = self._assign[list(present)]
        self.grad_steps += 1
        if not grads:
            return torch.zeros((), device=self.device)
        squares = self._squares(grads)
        self.grad_sum.add_((squares @ assign).sqrt_())
        return squares.sum().sqrt()

    @torch.no_grad()
    def before_update(self) -> None:
        """Remembers the weights (a device copy, into buffers kept from step to step)."""
        if not self._params:
            return
        if self._old is None:
            self._old = [p.detach().clone() for p in self._params]
        else:
            torch._foreach_copy_(self._old, self._params)
        self._saved = True

    @torch.no_grad()
    def after_update(self) -> None:
        """Adds each layer's ``||w_new - w_old|| / ||w_old||`` to the epoch's sum."""
        if not self._saved:  # no before_update since the last one
            return
        old = self._squares(self._old)
        torch._foreach_sub_(self._old, self._params)  # the buffers now hold w_old - w_new
        both = (torch.stack((old, self._squares(self._old))) @ self._assign).sqrt_()
        self.update_sum.add_(both[1] / both[0].clamp_min(EPS))
        self.update_steps += 1
        self._saved = False

    # -----------------------------------------------------------------------------------------
    # per epoch
    def end_epoch(self, epoch: int) -> List[Row]:
        """The probe, then the epoch's rows ``(epoch, layer, quantity, value)`` in model order
        (quantities in :data:`QUANTITIES` order) from one read of the device; the sums start
        again."""
        keys: List[Tuple[str, str]] = []
        parts: List[Tensor] = []

        def per_layer(quantity: str, values: Tensor) -> None:
            keys.extend((layer, quantity) for layer in self.layers)
            parts.append(values.float().reshape(-1))

        per_layer("weight_norm", self.layer_norms(self._params))
        if self.grad_steps:
            per_layer("grad_norm", self.grad_sum / self.grad_steps)
        if self.update_steps:
            per_layer("update_ratio", self.update_sum / self.update_steps)
        for key, value in self._probe().items():
            keys.append(key)
            parts.append(value.float().reshape(1))
        self.reset()
        if not parts:  # no parameters and no activations
            return []
        values = torch.cat(parts).tolist()  # the one host sync of the diagnostics per epoch
        found = dict(zip(keys, values))
        order = {name or ROOT: i for i, (name, _) in enumerate(self.model.named_modules())}
        names = list(QUANTITIES)
        ranked = sorted(found, key=lambda k: (order.get(k[0], len(order)), names.index(k[1])))
        return [(epoch, layer, quantity, found[layer, quantity]) for layer, quantity in ranked]

    def reset(self) -> None:
        self.grad_sum.zero_()
        self.update_sum.zero_()
        self.grad_steps = self.update_steps = 0
        self._saved = False

    def state_dict(self) -> Dict[str, Any]:
        """The sums of a partial epoch, for a checkpoint (tensors and plain values)."""
        return {"layers": list(self.layers), "grad_sum": self.grad_sum.detach().clone(),
                "grad_steps": self.grad_steps, "update_sum": self.update_sum.detach().clone(),
                "update_steps": self.update_steps}

    def load_state_dict(self, state: Optional[Dict[str, Any]]) -> None:
        """Continue a partial epoch; an empty state (a checkpoint from before diagnostics were
        on) starts the epoch's sums at zero."""
        if not state:
            self.reset()
            return
        if list(state["layers"]) != self.layers:
            raise ValueError(f"the saved diagnostics are of layers {state['layers']}, "
                             f"this model's are {self.layers}")
        self.grad_sum.copy_(state["grad_sum"])
        self.update_sum.copy_(state["update_sum"])
        self.grad_steps, self.update_steps = int(state["grad_steps"]), int(state["update_steps"])

    # -----------------------------------------------------------------------------------------
    # the probe
    def _find_activations(self) -> List[Tuple[str, nn.Module, str, float]]:
        """(layer it reports under, module, quantity, threshold) for each activation module."""
        found = []
        owner = None
        for name, module in self.model.named_modules():
            if next(module.parameters(recurse=False), None) is not None:
                owner = name or ROOT
            kind = _activation_kind(module)
            if kind is not None:
                found.append((owner or name, module, *kind))
        return found

    def _probe(self) -> Dict[Tuple[str, str], Tensor]:
        """Runs the probe batch; per (layer, quantity), a device scalar."""
        counts: Dict[Tuple[str, str], List[Tensor]] = {}
        totals: Dict[Tuple[str, str], int] = {}

        def hook_for(layer: str, quantity: str, threshold: float) -> Callable:
            key = (layer, quantity)

            def hook(module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
                x = inputs[0].detach()
                if quantity == "dead_fraction":
                    # units along dim 1; the batch and every position reduced
                    units = x.reshape(x.shape[0], x.shape[1] if x.dim() > 1 else 1, -1)
                    alive = units.amax(dim=(0, 2)) > 0
                    counts.setdefault(key, []).append((~alive).sum())
                    totals[key] = totals.get(key, 0) + alive.numel()
                else:
                    counts.setdefault(key, []).append((x.abs() > threshold).sum())
                    totals[key] = totals.get(key, 0) + x.numel()
            return hook

        handles = [module.register_forward_hook(hook_for(layer, quantity, threshold))
                   for layer, module, quantity, threshold in self._activations]
        modes = [(m, m.training) for m in self.model.modules()]  # a frozen part may be in eval
        hidden: Dict[Tuple[str, str], Tensor] = {}
        try:
            self.model.eval()
            if self._rnn_name is not None:
                hidden = self._hidden_grads()
            else:
                with torch.no_grad():
                    self.model(self.probe_x)
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes:
                module.training = training
        out = {key: torch.stack(counts[key]).sum() / max(totals[key], 1) for key in counts}
        out.update(hidden)
        return out

    def _hidden_grads(self) -> Dict[Tuple[str, str], Tensor]:
        with torch.enable_grad():
            output, states = self.model.unrolled(self.probe_x)
            loss = self.criterion(output.float(), self.probe_y)
            steps = len(states)
            picks = (0, steps // 2, steps - 1)
            unique = list(dict.fromkeys(picks))
            chosen = [states[t] for t in unique]
            if not all(s.requires_grad for s in chosen):  # a frozen recurrent layer
                return {}
            grads = torch.autograd.grad(loss, chosen, allow_unused=True)
        n = self.probe_x.shape[0]
        # the gradient of each sample's own loss: a batch-mean loss divides it by n
        scale = n if getattr(self.criterion, "reduction", "mean") == "mean" else 1
        norms = {t: (torch.zeros((), device=self.device) if g is None
                     else g.flatten(1).norm(dim=1).mean() * scale)
                 for t, g in zip(unique, grads)}
        return {(self._rnn_name, name): norms[t] for name, t in zip(HIDDEN_STEPS, picks)}
