"""Re-measure docs/theory.md: each building block of dltrain at work, one command each.

Every block states a claim from the textbooks, runs the dltrain command(s) shown on the page (in
this process, with fixed seeds, on the CPU), and tests the claim on the figures the runs gave:
the page says whether it held either way. Nothing numeric in the page is written by hand.

    python scripts/theory.py                      # the whole page, a few minutes on a laptop CPU
    python scripts/theory.py --quick --only losses --out /tmp/page.md   # a smoke run, seconds

Writes the page (``--out``, default docs/theory.md), its pictures into the folder named like
it (docs/theory/), the regression data of the losses block there too (the page's command reads
it), and docs/theory/readme_snippet.md, two figures for the README. Run folders go to a
temporary folder, or to ``--keep DIR``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "theory.md"
# added to every command the page shows: they change where and how quietly a run trains, not
# its maths (on the CPU dltrain is deterministic, so the commands give the page's figures)
UNSHOWN = ["trainer.device=cpu", "trainer.progress=none"]
SEED = "trainer.seed"
VERDICT = {True: "held", False: "did not hold"}


# ---------------------------------------------------------------------------------------------
# what runs: a command of `dltrain -m` and the jobs it stands for
@dataclass
class Sweep:
    """One `dltrain -m` command: ``grid`` (key -> values, a product as Hydra runs it) over the
    block's ``shared`` overrides and the sweep's ``own``. A job's label is its grid values but
    the seed, then ``own``: the variant it measures."""

    grid: Dict[str, List[str]]
    own: List[str] = field(default_factory=list)

    def jobs(self, shared: Sequence[str]) -> List[Tuple[str, List[str]]]:
        out = []
        for values in itertools.product(*self.grid.values()):
            swept = [f"{key}={value}" for key, value in zip(self.grid, values)]
            label = " ".join([s for s in swept if not s.startswith(SEED + "=")] + self.own)
            out.append((label, [*swept, *self.own, *shared]))
        return out

    def command(self, shared: Sequence[str]) -> str:
        swept = [f"{key}={','.join(values)}" for key, values in self.grid.items()]
        multi = any(len(values) > 1 for values in self.grid.values())
        return shlex.join(["dltrain", *(["-m"] if multi else []), *swept, *self.own, *shared])


def seeds(n: int) -> Dict[str, List[str]]:
    """The seed axis of a grid: none for a single seed (the default, 0)."""
    return {SEED: [str(s) for s in range(n)]} if n > 1 else {}


@dataclass
class Result:
    variant: str
    run_dir: Path
    summary: Dict[str, object]
    history: List[Dict[str, float]]

    def get(self, key: str) -> float:
        value = self.summary.get(key)
        return float(value) if isinstance(value, (int, float)) else math.nan

    @functools.cached_property
    def rows(self) -> List[Tuple[int, str, str, float]]:
        from dltrain.diagnostics import DIAGNOSTICS, read_rows

        return read_rows(self.run_dir / DIAGNOSTICS)

    def diagnostics(self, quantity: str) -> Dict[str, float]:
        """diagnostics.csv's ``quantity`` per layer (model order) at the last epoch."""
        last = max(row[0] for row in self.rows)
        return {layer: value for e, layer, q, value in self.rows if e == last and q == quantity}


class Runner:
    """Trains jobs in this process, each into a folder of its own under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def train(self, label: str, overrides: List[str]) -> Result:
        from rich.console import Console

        from dltrain import runs
        from dltrain.launch import compose
        from dltrain.train.run import run_training

        config = compose([*overrides, *UNSHOWN])
        self.count += 1
        run_dir = self.root / f"{self.count:03d}"
        summary = run_training(config, run_dir, Console(quiet=True),
                               command=["dltrain", *overrides])
        return Result(label, run_dir, summary, runs.read_metrics(run_dir / runs.METRICS))

    def sweeps(self, sweeps: Sequence[Sweep], shared: Sequence[str]) -> Dict[str, List[Result]]:
        """Every job of ``sweeps``, grouped by variant (seeds together), in order."""
        grouped: Dict[str, List[Result]] = {}
        for sweep in sweeps:
            for label, overrides in sweep.jobs(shared):
                grouped.setdefault(label, []).append(self.train(label, overrides))
        return grouped


# ---------------------------------------------------------------------------------------------
# the page's pieces
@dataclass
class Claim:
    text: str
    held: bool
    evidence: str

    def markdown(self) -> str:
        return f"> **Claim:** {self.text}\n>\n> **Verdict: {VERDICT[self.held]}.** {self.evidence}"


@dataclass
class Section:
    title: str
    intro: str
    commands: List[str]
    body: List[str]  # markdown chunks: tables, figures, notes, in order
    claims: List[Claim]
    readme: List[Tuple[str, str, str]] = field(default_factory=list)  # picture, alt, caption
    runs: int = 0
    seconds: float = 0.0

    def markdown(self) -> str:
        commands = "\n".join(self.commands)
        return "\n\n".join([f"## {self.title}", self.intro, f"```\n{commands}\n```", *self.body,
                            *(c.markdown() for c in self.claims),
                            f"*{self.runs} runs, {self.seconds:.0f} s on this machine.*"])


@dataclass
class Context:
    runner: Runner
    quick: bool
    pictures: Path  # the page's picture folder

    def pick(self, full, quick):
        return quick if self.quick else full

    def figure(self, name: str, alt: str) -> str:
        return f"![{alt}]({self.pictures.name}/{name})"


def shown(path: Path) -> str:
    """A path as the page shows it: from the repository's root (where the commands run) when it
    lies inside."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def sci(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2e}"


def fix(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``0.953 ± 0.004`` over seeds (the sample std); one value alone."""
    if len(values) < 2:
        return fix(values[0], digits) if values else "n/a"
    return f"{fix(mean(values), digits)} ± {fix(statistics.stdev(values), digits)}"


def by_value(grouped: Dict[str, List[Result]]) -> Dict[str, Result]:
    """One run per variant of a one-key, one-seed sweep, by the key's value (``relu``)."""
    return {label.split("=", 1)[1]: results[0] for label, results in grouped.items()}


def metric(results: Sequence[Result], key: str) -> List[float]:
    return [r.get(key) for r in results]


def words(items: Sequence[str]) -> str:
    return ", ".join(f"`{item}`" for item in items) if items else "none of them"


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


# ---------------------------------------------------------------------------------------------
# pictures
def mean_history(results: Sequence[Result]) -> List[Dict[str, float]]:
    """metrics.csv averaged over seeds, epoch by epoch (as far as every run went)."""
    epochs = min(len(r.history) for r in results)
    keys = results[0].history[0].keys()
    return [{k: mean([r.history[i][k] for r in results]) for k in keys} for i in range(epochs)]


def overlay(ctx: Context, grouped: Dict[str, List[Result]], name: str, title: str,
            panels: Optional[Sequence[str]] = None) -> str:
    """``dltrain compare``'s picture of the variants' curves (the mean over seeds); the
    learning-rate panel only where the rate differs."""
    from dltrain import compare, plots

    curves = [(label, mean_history(results)) for label, results in grouped.items()]
    keys = [k for k in panels or compare.PANELS if all(k in h[0] for _, h in curves)]
    if len({row.get("lr") for _, h in curves for row in h}) <= 1 and "lr" in keys:
        keys.remove("lr")
    plots.plot_compare(curves, keys, ctx.pictures / name, title=title)
    return ctx.figure(name, title)


def log_lines(ctx: Context, series: Dict[str, Sequence[float]], ticks: Sequence[str], name: str,
              title: str, xlabel: str, ylabel: str) -> str:
    """One line per series over ``ticks``, on a log axis (values <= 0 leave a gap)."""
    from dltrain import plots

    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    drawn: List[float] = []
    for (label, values), color in zip(series.items(), plots.run_colors(len(series))):
        ys = [v if math.isfinite(v) and v > 0 else math.nan for v in values]
        ax.plot(range(len(ys)), ys, marker="o", color=color, label=label)
        drawn += [y for y in ys if not math.isnan(y)]
    ax.set_xticks(range(len(ticks)), ticks)
    if drawn:
        plots.log_axis(ax.yaxis, drawn)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    plots._save(fig, ctx.pictures / name)
    return ctx.figure(name, title)


def gradflow(ctx: Context, result: Result, name: str, title: str) -> str:
    """The diagnostics' own gradflow.png of one run."""
    from dltrain.diagnostics import DIAGNOSTICS, plot_gradflow

    plot_gradflow(result.run_dir / DIAGNOSTICS, ctx.pictures / name, title)
    return ctx.figure(name, title)


# ---------------------------------------------------------------------------------------------
# the blocks
def activations(ctx: Context) -> Section:
    depth = 9  # hidden layers: 10 layers with weights, with the output layer
    names = ["relu", "sigmoid", "tanh"]
    shared = [f"model.hidden_sizes=[{','.join(['32'] * depth)}]",
              f"trainer.epochs={ctx.pick(20, 1)}", "trainer.diagnostics=true"]
    sweeps = [Sweep({"activation": names})]
    grouped = ctx.runner.sweeps(sweeps, shared)
    runs = by_value(grouped)
    grads = {act: list(r.diagnostics("grad_norm").values()) for act, r in runs.items()}
    ratio = {act: g[0] / g[-1] for act, g in grads.items()}
    rows = []
    for act, r in runs.items():
        hidden = list(r.diagnostics("dead_fraction").values()) or []
        saturated = list(r.diagnostics("saturated_fraction").values())
        rows.append([f"`{act}`", fix(r.get("test_acc")), sci(grads[act][0]), sci(grads[act][-1]),
                     sci(ratio[act]), fix(mean(hidden), 2) if hidden else "—",
                     fix(mean(saturated), 2) if saturated else "—"])
    sig, relu = grads["sigmoid"][0], grads["relu"][0]
    claim = Claim(
        "under sigmoid the first layer's gradient norm is orders of magnitude (at least 100x) "
        "smaller than the last layer's, and smaller than the first layer's under relu.",
        ratio["sigmoid"] <= 1e-2 and sig < relu,
        f"sigmoid's first/last ratio is {sci(ratio['sigmoid'])} (relu's {sci(ratio['relu'])}, "
        f"tanh's {sci(ratio['tanh'])}); its first-layer gradient norm is {sci(sig)} against "
        f"relu's {sci(relu)}, {sci(relu / sig)} times smaller. Test accuracy: "
        + ", ".join(f"{act} {fix(r.get('test_acc'))}" for act, r in runs.items()) + ".")
    ticks = [str(i + 1) for i in range(len(grads["relu"]))]

    def profile(acts: Sequence[str], name: str, title: str) -> str:
        return log_lines(ctx, {a: grads[a] for a in acts}, ticks, name, title,
                         "layer (1 = input side, last = output layer)",
                         "‖∇W‖, mean over the last epoch's steps")

    body = [
        table(["activation", "test acc", "‖∇W‖ layer 1", "‖∇W‖ last layer", "first / last",
               "dead share (hidden layers)", "saturated share (hidden layers)"], rows),
        "Gradient norms are diagnostics.csv's `grad_norm` at the last epoch (the mean over its "
        "recorded steps); the dead and saturated shares are the mean over the hidden layers on "
        "the diagnostics' probe batch (`dltrain/diagnostics/recorder.py` defines them).",
        profile(names, "activations_gradients.png", "gradient norm per layer, last epoch"),
        overlay(ctx, grouped, "activations.png", "a 10-layer MLP on digits"),
        gradflow(ctx, runs["sigmoid"], "activations_sigmoid_gradflow.png",
                 "activation=sigmoid: gradflow.png of the run"),
    ]
    profile(["relu", "sigmoid"], "readme_activations.png",
            f"{depth + 1}-layer MLP on digits: gradient norm per layer")
    caption = (f"A {depth + 1}-layer MLP on digits: the first layer's gradient norm is "
               f"{sci(sig)} under sigmoid and {sci(relu)} under relu (last epoch).")
    return Section(
        "Activations: gradient flow through a deep MLP",
        f"A sigmoid's slope is at most 1/4, so the gradient that reaches the first of "
        f"{depth + 1} layers is a product of many small factors: it vanishes. ReLU passes the "
        "gradient of its active units unchanged; tanh's slope reaches 1 at zero. The MLP has "
        f"{depth} hidden layers of 32 units (10 layers with weights), trained with Adam on "
        "digits; `trainer.diagnostics=true` writes each layer's gradient norm per epoch.",
        [s.command(shared) for s in sweeps], body, [claim],
        readme=[("readme_activations.png", "gradient norm per layer, sigmoid and relu", caption)])


def write_outlier_data(path: Path, sizes: Tuple[int, int, int], share: float) -> Dict[str, object]:
    """A linear regression with small noise; ``share`` of the training rows get a gross target
    error (all upwards, 15 to 25 target stds, like a unit mix-up). Validation and test targets
    are clean: the npz file's x_val, y_val, x_test, y_test are dltrain's val and test splits."""
    rng = np.random.default_rng(0)
    weights = np.array([1.5, -2.0, 1.0, 0.0, 0.0])
    noise = 0.1

    def draw(n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, len(weights)))
        eps = noise * rng.normal(size=n)
        return x.astype(np.float32), (x @ weights + eps).astype(np.float32), eps

    (x, y, _), (xv, yv, _), (xt, yt, eps_test) = (draw(n) for n in sizes)
    bad = rng.choice(len(y), size=round(share * len(y)), replace=False)
    y[bad] += (rng.uniform(15, 25, size=len(bad)) * y.std()).astype(np.float32)
    np.savez(path, x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    return {"weights": weights, "noise": noise, "outliers": len(bad), "sizes": sizes,
            "test_var": float(yt.var()), "floor_mae": float(np.abs(eps_test).mean())}


def losses(ctx: Context) -> Section:
    share = 0.04
    data = ctx.pictures / "outliers.npz"
    info = write_outlier_data(data, ctx.pick((1000, 300, 500), (200, 60, 100)), share)
    shared = ["data=npz", f"data.path={shown(data)}", "model.hidden_sizes=[64,64]",
              f"trainer.epochs={ctx.pick(40, 1)}", "trainer.monitor=val_mae"]
    sweeps = [Sweep({"loss": ["mse", "huber", "l1"]})]
    grouped = ctx.runner.sweeps(sweeps, shared)
    runs = by_value(grouped)
    rmse = {name: math.sqrt(max(0.0, 1 - r.get("test_r2")) * info["test_var"])
            for name, r in runs.items()}
    rows = [[f"`{name}`", fix(r.get("test_mae")), fix(rmse[name]), fix(r.get("test_r2"), 4)]
            for name, r in runs.items()]
    rows.append(["(the true line)", fix(info["floor_mae"]), fix(info["noise"]), ""])
    mae = {name: r.get("test_mae") for name, r in runs.items()}
    claim = Claim(
        "with gross errors in the training targets, Huber and L1 fit the clean test targets "
        "better than MSE (lower test MAE).",
        mae["huber"] < mae["mse"] and mae["l1"] < mae["mse"],
        f"test MAE: mse {fix(mae['mse'])}, huber {fix(mae['huber'])}, l1 {fix(mae['l1'])}; "
        f"the noise alone gives {fix(info['floor_mae'])}.")
    terms = " ".join(f"{'+' if w > 0 else '−'} {abs(w):g}·x{i + 1}"
                     for i, w in enumerate(info["weights"]) if w)
    n_train, n_val, n_test = info["sizes"]
    return Section(
        "Losses: MSE, Huber and L1 against outliers",
        f"MSE squares each error, so a few gross errors pull the fit towards them; Huber is "
        f"quadratic near zero and linear beyond `loss.delta` (1, in standardized target units), "
        f"L1 linear everywhere, so an outlier's pull is bounded. The data ({shown(data)}, "
        f"written by the script) is y = {terms.lstrip('+ ')} + noise (std {info['noise']:g}) over "
        f"{len(info['weights'])} standard normal features; {info['outliers']} of the "
        f"{n_train} training rows ({share:.0%}) have targets raised by 15 to 25 target stds. "
        f"The validation ({n_val}) and test ({n_test}) targets are clean: the file gives them as "
        "`x_val, y_val, x_test, y_test`, which `data=npz` takes as its splits. The kept "
        "checkpoint is the best by validation MAE for every loss (`trainer.monitor=val_mae`), "
        "so the losses are compared on the same criterion.",
        [s.command(shared) for s in sweeps],
        [table(["loss", "test MAE", "test RMSE", "test R²"], rows),
         "Test MAE and R² are summary.json's, on the clean test targets; RMSE is derived from "
         "R² and the test targets' variance. The last row is the true line itself: the noise.",
         overlay(ctx, grouped, "losses.png", "loss on targets with outliers",
                 panels=("val_mae", "val_r2"))],
        [claim])


def epochs_to(history: Sequence[Dict[str, float]], key: str, target: float) -> float:
    """The first epoch whose ``key`` is at most ``target``; inf when none is."""
    return next((row["epoch"] for row in history if row[key] <= target), math.inf)


def optimizers(ctx: Context) -> Section:
    target = 0.15  # a low validation loss for this MLP on digits (cross-entropy)
    n_seeds = ctx.pick(3, 1)
    shared = [f"trainer.epochs={ctx.pick(20, 2)}"]
    sweeps = [Sweep({"optim": ["sgd"], "optim.momentum": ["0", "0.9"], **seeds(n_seeds)}),
              Sweep({"optim": ["adam", "rmsprop"], **seeds(n_seeds)})]
    grouped = ctx.runner.sweeps(sweeps, shared)
    speed = {label: [epochs_to(r.history, "val_loss", target) for r in results]
             for label, results in grouped.items()}

    def reached(label: str) -> str:
        done = [e for e in speed[label] if math.isfinite(e)]
        text = mean_std(done, 1) if done else "not reached"
        return text + (f" ({len(done)} of {len(speed[label])} seeds)"
                       if 0 < len(done) < len(speed[label]) else "")

    rows = [[f"`{label}`", mean_std([r.history[0]["val_loss"] for r in results]),
             reached(label), mean_std([r.history[-1]["train_loss"] for r in results], 4),
             mean_std(metric(results, "best_val_loss")), mean_std(metric(results, "test_acc"))]
            for label, results in grouped.items()]
    pace = {label: mean(s) for label, s in speed.items()}  # inf when a seed never got there
    sgd0, sgd9 = (f"optim=sgd optim.momentum={m}" for m in ("0", "0.9"))
    adaptive = [label for label in grouped if not label.startswith("optim=sgd")]
    plain = [label for label in grouped if label not in adaptive]
    fastest = min(pace, key=pace.get)
    epochs_of = "; ".join(f"`{label}` {reached(label)}" for label in grouped)
    claims = [
        Claim("momentum speeds SGD up: with momentum 0.9 it reaches the target validation loss "
              "in fewer epochs than without.",
              pace[sgd9] < pace[sgd0],
              f"epochs to val_loss ≤ {target}: momentum 0.9 {reached(sgd9)}, momentum 0 "
              f"{reached(sgd0)}."),
        Claim("at their default learning rates, Adam and RMSprop both reach the target "
              "validation loss in fewer epochs than SGD, with or without momentum.",
              max(pace[a] for a in adaptive) < min(pace[p] for p in plain),
              f"epochs to val_loss ≤ {target}: {epochs_of}. The fastest is `{fastest}`."),
    ]
    return Section(
        "Optimizers: SGD, momentum, Adam and RMSprop",
        "Momentum adds up past steps, so a consistent gradient direction gains speed; Adam and "
        "RMSprop divide each parameter's step by a running average of its squared gradient, "
        "which evens out badly scaled directions. The model is the default MLP on digits, each "
        f"optimizer at dltrain's default learning rate, {counted(n_seeds, 'seed')}. "
        f"Speed is measured as the first epoch whose validation loss is at most {target}.",
        [s.command(shared) for s in sweeps],
        [table(["optimizer", "val loss after epoch 1", f"epochs to val loss ≤ {target}",
                "train loss, last epoch", "best val loss", "test acc"], rows),
         f"Mean ± std over {counted(n_seeds, 'seed')} (`trainer.seed`; the split "
         "stays fixed). The curves are the mean over seeds.",
         overlay(ctx, grouped, "optimizers.png", "the default MLP on digits")],
        claims)


def adding_baseline(overrides: List[str]) -> float:
    """Test MSE of always predicting the training targets' mean."""
    from dltrain.data import load_data
    from dltrain.launch import compose

    data = load_data(compose([*overrides, *UNSHOWN]).data)
    return float((data.test.y - data.train.y.mean()).square().mean())


def architectures(ctx: Context) -> Section:
    n_seeds = ctx.pick(3, 1)
    image_shared = [f"trainer.epochs={ctx.pick(15, 1)}"]
    image_sweeps = [Sweep({"model": ["mlp", "cnn"], **seeds(n_seeds)})]
    images = ctx.runner.sweeps(image_sweeps, image_shared)
    seq_len = ctx.pick(50, 8)
    adding_shared = ["experiment=adding", f"data.seq_len={seq_len}",
                     f"data.num_samples={ctx.pick(4000, 200)}", "trainer.batch_size=32",
                     f"trainer.epochs={ctx.pick(15, 1)}", "trainer.diagnostics=true"]
    adding_sweeps = [Sweep({"model": ["rnn", "lstm", "gru"]})]
    adding = ctx.runner.sweeps(adding_sweeps, adding_shared)
    cells = by_value(adding)
    baseline = adding_baseline(adding_sweeps[0].jobs(adding_shared)[0][1])

    models = {label.split("=", 1)[1]: results for label, results in images.items()}
    acc = {model: metric(results, "test_acc") for model, results in models.items()}
    image_rows = [[f"`{model}`", f"{int(results[0].get('parameters')):,}", mean_std(acc[model]),
                   mean_std(metric(results, "train_time_s"), 1)]
                  for model, results in models.items()]
    steps = ("hidden_grad_first", "hidden_grad_middle", "hidden_grad_last")
    hidden = {cell: [r.diagnostics(q).get("rnn", math.nan) for q in steps]
              for cell, r in cells.items()}
    ratio = {cell: h[0] / h[-1] for cell, h in hidden.items()}
    r2 = {cell: r.get("test_r2") for cell, r in cells.items()}
    mse = {cell: r.get("test_loss") for cell, r in cells.items()}  # loss=auto: MSE
    adding_rows = [[f"`{cell}`", fix(mse[cell], 4), fix(r2[cell]),
                    *(sci(v) for v in hidden[cell]), sci(ratio[cell])] for cell in cells]
    adding_rows.append(["(predict the mean)", fix(baseline, 4), fix(0.0), "", "", "", ""])
    gated = ("lstm", "gru")
    claims = [
        Claim("a CNN classifies the digit images at least as well as an MLP.",
              mean(acc["cnn"]) >= mean(acc["mlp"]),
              f"test accuracy, mean over {counted(n_seeds, 'seed')}: cnn "
              f"{mean_std(acc['cnn'])}, mlp {mean_std(acc['mlp'])}."),
        Claim("LSTM and GRU solve the adding problem, with a test MSE under a tenth of the "
              "baseline's, while the vanilla RNN stays above half of it.",
              all(mse[c] < baseline / 10 for c in gated) and mse["rnn"] > baseline / 2,
              f"test MSE against the baseline's {fix(baseline, 4)}: "
              + ", ".join(f"{c} {fix(mse[c], 4)} (R² {fix(r2[c])})" for c in cells) + "."),
        Claim("the RNN's gradient vanishes over time: the loss's gradient reaching its hidden "
              "state at the first step, relative to the last step, is at least 100x smaller than "
              "in the LSTM and the GRU.",
              all(ratio["rnn"] * 100 <= ratio[c] for c in gated),
              "first/last ratio at the last epoch: "
              + ", ".join(f"{c} {sci(ratio[c])}" for c in cells) + "."),
    ]
    ticks = ["first", "middle", "last"]

    def hidden_lines(chosen: Sequence[str], name: str, title: str) -> str:
        return log_lines(ctx, {c: hidden[c] for c in chosen}, ticks, name, title, "time step",
                         "‖∂loss/∂h_t‖, mean over probe samples")

    body = [
        "**Images.** scikit-learn's digits are 8x8 images: the MLP flattens them, the CNN "
        "convolves them (both at their defaults).",
        table(["model", "parameters", "test acc", "train time (s)"], image_rows),
        overlay(ctx, images, "architectures_digits.png", "MLP against CNN on digits"),
        "**Sequences.** The adding problem: the target is the sum of the two marked values of a "
        f"sequence of {seq_len} steps (`experiment=adding`, shortened here). Always predicting "
        "the training mean gives the baseline in the last row, about the variance 1/6 of a sum "
        "of two uniform values. The hidden-state gradients are diagnostics.csv's "
        "`hidden_grad_first/middle/last` for layer `rnn` at the last epoch.",
        table(["cell", "test MSE", "test R²", "‖∂L/∂h‖ first step", "middle step", "last step",
               "first / last"], adding_rows),
        overlay(ctx, adding, "architectures_adding.png", "the adding problem"),
        hidden_lines(list(cells), "architectures_hidden.png",
                     "hidden-state gradient, last epoch"),
    ]
    hidden_lines(["rnn", "lstm"], "readme_adding.png",
                 f"adding problem (T={seq_len}): hidden-state gradient")
    caption = (f"The adding problem, {seq_len} steps: the gradient reaching the hidden state at "
               f"the first step is {sci(ratio['rnn'])} of the last step's in a vanilla RNN and "
               f"{sci(ratio['lstm'])} in an LSTM (test R² {fix(r2['rnn'])} against "
               f"{fix(r2['lstm'])}).")
    return Section(
        "Architectures: MLP against CNN, RNN against LSTM and GRU",
        "A convolution shares its weights across positions and sees neighbouring pixels "
        "together, which suits images. A vanilla RNN multiplies its gradient by the recurrent "
        "Jacobian at every step back in time, so it shrinks geometrically; the LSTM's cell "
        "state and the GRU's update gate carry it across many steps.",
        [s.command(shared) for s, shared in ((image_sweeps[0], image_shared),
                                             (adding_sweeps[0], adding_shared))],
        body, claims,
        readme=[("readme_adding.png", "hidden-state gradient over time, rnn and lstm", caption)])


def final_model_metrics(result: Result) -> Dict[str, float]:
    """Loss and accuracy of the model as training left it (last.pt) on train, val and test, in
    eval mode (no dropout; batch norm's running statistics), with dltrain's own evaluation."""
    from dltrain import runs, schema
    from dltrain.checkpoint import load_checkpoint
    from dltrain.evaluate import build_eval_job
    from dltrain.train.loop import evaluate

    ckpt = load_checkpoint(result.run_dir / runs.CHECKPOINTS / runs.LAST)
    job = build_eval_job(schema.load_config(ckpt["config"]))
    job.model.load_state_dict(ckpt["model"])
    return {key: value for split in ("train", "val", "test")
            for key, value in evaluate(job, getattr(job.data, split), split).items()}


def regularization(ctx: Context) -> Section:
    n_seeds = ctx.pick(3, 1)
    val, test = 0.6, 0.3
    shared = [f"data.val_fraction={val}", f"data.test_fraction={test}",
              f"trainer.epochs={ctx.pick(100, 2)}"]
    sweeps = [Sweep({"regularization": ["none", "dropout", "batchnorm"], **seeds(n_seeds)}),
              Sweep({"regularization": ["l2"], **seeds(n_seeds)},
                    ["regularization.weight_decay=0.01"]),
              Sweep({"regularization": ["l1"], **seeds(n_seeds)}, ["regularization.l1=0.0003"])]
    grouped = ctx.runner.sweeps(sweeps, shared)
    final = {label: [final_model_metrics(r) for r in results] for label, results in grouped.items()}

    def over_seeds(label: str, of: Callable[[Dict[str, float]], float]) -> List[float]:
        return [of(m) for m in final[label]]

    loss_gap = {label: over_seeds(label, lambda m: m["val_loss"] - m["train_loss"])
                for label in grouped}
    acc_gap = {label: over_seeds(label, lambda m: m["train_acc"] - m["val_acc"])
               for label in grouped}
    test_acc = {label: over_seeds(label, lambda m: m["test_acc"]) for label in grouped}
    rows = [[f"`{label}`", mean_std(over_seeds(label, lambda m: m["train_acc"])),
             mean_std(over_seeds(label, lambda m: m["val_acc"])), mean_std(acc_gap[label]),
             mean_std(loss_gap[label]), mean_std(test_acc[label])] for label in grouped]
    none, *regularized = grouped

    def below_none(values: Dict[str, List[float]], sign: float = 1) -> List[str]:
        return [r for r in regularized if sign * mean(values[r]) < sign * mean(values[none])]

    narrowed = below_none(loss_gap)
    others = [r for r in regularized if r not in narrowed]
    claims = [
        Claim("on a small training set, each regularizer narrows the generalization gap of the "
              "unregularized model: the final model's validation loss exceeds its training loss "
              "by less.",
              not others,
              f"loss gap (val − train cross-entropy) of `{none}`: {mean_std(loss_gap[none])}; "
              + "; ".join(f"`{r}`: {mean_std(loss_gap[r])}" for r in regularized)
              + (f". Not narrower: {words(others)}" if others else "")
              + f". The accuracy gap is narrower with {words(below_none(acc_gap))}. Test "
              f"accuracy above `{none}`'s ({mean_std(test_acc[none])}): "
              f"{words(below_none(test_acc, sign=-1))}."),
    ]
    train_share = f"{1 - val - test:.0%}"
    return Section(
        "Regularization on a small training set",
        "A model that can memorize a small training set fits its noise: its training loss "
        "runs far below its validation loss. Dropout, an L2 or L1 penalty and batch norm each "
        f"restrain that. Here the digits split keeps only {train_share} for training "
        f"(`data.val_fraction={val} data.test_fraction={test}`), the default MLP trains long "
        "with Adam, and each regularizer is compared with none. L2 and L1 are set stronger "
        "than their presets' defaults.",
        [s.command(shared) for s in sweeps],
        [table(["regularization", "train acc", "val acc", "acc gap (train − val)",
                "loss gap (val − train)", "test acc"], rows),
         "Every figure is the final model's (last.pt), evaluated in eval mode with dltrain's "
         "own evaluation, so dropout does not lower the training accuracy. The training "
         "accuracy reaches 1 where the model has memorized its training set: then the "
         "accuracy gap only restates the validation accuracy, and the loss gap measures how "
         f"far the fit went. Mean ± std over {counted(n_seeds, 'seed')}.",
         overlay(ctx, grouped, "regularization.png", f"regularization on {train_share} of digits")],
        claims)


BLOCKS: Dict[str, Callable[[Context], Section]] = {
    "activations": activations,
    "losses": losses,
    "optimizers": optimizers,
    "architectures": architectures,
    "regularization": regularization,
}


# ---------------------------------------------------------------------------------------------
# the page
def machine() -> str:
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores (load average "
            f"{load} at the start), Python {platform.python_version()}, torch {torch.__version__}")


def page(sections: Sequence[Section], quick: bool, where: str, seconds: float) -> str:
    held = sum(c.held for s in sections for c in s.claims)
    total = sum(len(s.claims) for s in sections)
    head = [
        "# dltrain's building blocks, measured",
        "<!-- written by scripts/theory.py: edit the script, not this page -->",
        "Each section takes one kind of building block, states what the textbooks say it does, "
        "runs the dltrain command shown (copy it to rerun it) and tests the claim on what the "
        "runs measured. Every figure and every verdict below comes from those runs: "
        "`python scripts/theory.py` measures them again and rewrites this page and its "
        "pictures. The script runs each command in one process, adding "
        f"`{' '.join(UNSHOWN)}`; on the CPU dltrain is deterministic, so the commands give "
        "the same figures.",
        f"Measured on {where}; {len(sections)} sections, {sum(s.runs for s in sections)} runs in "
        f"{seconds:.0f} s. {held} of {total} claims held.",
    ]
    if quick:
        head.append("**This is a smoke run (`--quick`): budgets are cut to seconds, and the "
                    "figures and verdicts mean nothing.**")
    return "\n\n".join([*head, *(s.markdown() for s in sections)]) + "\n"


def readme_snippet(sections: Sequence[Section], page_path: Path, pictures: Path) -> Optional[str]:
    """Markdown for the README: the sections' README figures with their captions."""
    items = [item for s in sections for item in s.readme]
    if not items:
        return None
    lines = [f"Measured by `python scripts/theory.py` ([{shown(page_path)}]"
             f"({shown(page_path)}) has every block):", ""]
    for picture, alt, caption in items:
        lines += [f"![{alt}]({shown(pictures / picture)})", "", caption, ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: every budget cut to seconds (for tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the page to write; its pictures go to the folder named like it")
    parser.add_argument("--only", default=",".join(BLOCKS),
                        help=f"comma-separated blocks, of: {', '.join(BLOCKS)}")
    parser.add_argument("--keep", type=Path, help="keep the run folders in this folder")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BLOCKS]
    if unknown or not chosen:
        parser.error(f"--only: unknown block {', '.join(unknown) or '(none)'}; "
                     f"known: {', '.join(BLOCKS)}")
    out = args.out.resolve()
    pictures = out.with_suffix("")
    pictures.mkdir(parents=True, exist_ok=True)
    where = machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dltrain-theory-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        sections = []
        for name in chosen:
            runner = Runner(root / name)
            began = time.perf_counter()
            section = BLOCKS[name](Context(runner, args.quick, pictures))
            section.runs, section.seconds = runner.count, time.perf_counter() - began
            verdicts = ", ".join(VERDICT[c.held] for c in section.claims)
            print(f"{name}: {runner.count} runs in {section.seconds:.1f} s; claims {verdicts}",
                  flush=True)
            sections.append(section)
    seconds = time.perf_counter() - start
    out.write_text(page(sections, args.quick, where, seconds))
    snippet = readme_snippet(sections, out, pictures)
    if snippet:
        (pictures / "readme_snippet.md").write_text(snippet)
    print(f"wrote {out} and {pictures}/ in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from anywhere, without an install
    sys.exit(main())
