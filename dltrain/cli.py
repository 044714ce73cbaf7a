"""The ``dltrain`` command: subcommands first, otherwise Hydra compose → validate → train.

Only Hydra, OmegaConf, rich and the schema are imported up front; torch is imported when there
is something to train, so ``--help`` and config errors answer at once.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dltrain import schema
from dltrain.errors import UserError
from dltrain.registry import unknown_name

UID_ENV = "DLTRAIN_RUN_UID"

# off a terminal rich would wrap at 80 columns; a log line reads better unbroken
console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def config_dir() -> Path:
    return Path(str(resources.files("dltrain.configs")))


def run_uid() -> str:
    """A short random id for this invocation's run folder (also inherited by sweep workers)."""
    if UID_ENV not in os.environ:
        os.environ[UID_ENV] = secrets.token_hex(3)
    return os.environ[UID_ENV]


def report(error: BaseException) -> None:
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(str(error), markup=False)


def _remove_if_untrained(run_dir: Path) -> None:
    """Drop a run folder that holds only what Hydra wrote before the run failed to start
    (a folder with checkpoints or metrics is never touched)."""
    if not run_dir.is_dir():
        return
    leftovers = {p.name for p in run_dir.iterdir()} - {".hydra"}
    if all(name.endswith(".log") for name in leftovers):
        shutil.rmtree(run_dir, ignore_errors=True)


def train_task(cfg: DictConfig) -> Optional[float]:
    """Hydra's task function: one training job. Returns the best monitored validation metric,
    the objective that Hydra sweepers (Optuna) optimize."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        config = schema.load_config(cfg)
        from dltrain.train.run import run_training  # torch is imported here, not before

        summary = run_training(config, run_dir, console)
    except UserError as e:
        report(e)
        _remove_if_untrained(run_dir)
        raise SystemExit(e.exit_code) from None
    if summary["status"] == "failed":
        report(UserError(f"training failed: {summary.get('reason')}"))
        if HydraConfig.get().mode.name != "MULTIRUN":  # a sweep goes on with its other jobs
            raise SystemExit(1)
    return summary.get(f"best_{summary['monitor']}")


_NOISE = ("full_key:", "To append to your config", "reference_type=", "object_type=", "Config search path", "provider=",
          "Set the environment variable HYDRA_FULL_ERROR")


def clean_hydra_error(error: Exception) -> str:
    """Hydra's message without its internals (search path, reference types)."""
    messages, cause = [], error
    while cause is not None:  # Hydra keeps the useful part ("Key 'lrr' not in ...") in the cause
        messages.append(str(cause))
        cause = cause.__cause__
    lines = [ln.rstrip() for m in messages for ln in m.splitlines()]
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith(_NOISE)]
    match = re.search(r"Key '(\w+)' not in '(\w+)'", " ".join(lines))
    if match:
        known = schema.keys_of_class(match.group(2))
        if known:
            lines.append(f"allowed keys there: {', '.join(known)}")
    if lines and lines[0].startswith("In 'train': "):
        lines[0] = lines[0][len("In 'train': "):]
    return "\n".join(lines)


def precheck(argv: List[str]) -> None:
    """Compose and validate a single run's config before Hydra makes a run folder for it.

    Sweeps and Hydra's own flags (anything starting with '-') are left to Hydra: each job
    validates itself in :func:`train_task`.
    """
    if any(arg.startswith("-") for arg in argv):
        return
    for arg in argv:
        group, _, option = arg.partition("=")
        options = schema.GROUPS.get(group)
        if options is not None and option not in options and "," not in option:
            raise UserError(unknown_name(group, option, options))
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="dltrain"):
            cfg = compose("train", overrides=argv)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(clean_hydra_error(e)) from None
    schema.load_config(cfg)


def run_hydra(argv: List[str]) -> None:
    import hydra

    schema.register_configs()
    OmegaConf.register_new_resolver("dltrain_uid", run_uid, replace=True)
    try:
        precheck(argv)
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(train_task)()


def print_help(argv: List[str]) -> int:
    lines = [
        "[bold]dltrain[/] - train PyTorch models from Hydra configs.",
        "",
        "[bold]usage[/]",
        "  dltrain [GROUP=OPTION ...] [KEY=VALUE ...]     train one model",
        "  dltrain -m GROUP=A,B KEY=X,Y ...               sweep: one job per combination",
        "",
        "[bold]config groups[/] (default first)",
    ]
    defaults = {"model": "mlp", "activation": "relu", "loss": "auto", "optim": "adam",
                "sched": "none", "data": "digits", "regularization": "none"}
    groups = dict(schema.GROUPS)
    groups["regularization"] = {p.stem: None for p in sorted((config_dir() / "regularization").glob("*.yaml"))}
    for group, options in groups.items():
        names = sorted(options, key=lambda n: (n != defaults.get(group), n))
        lines.append(f"  {group:<15} {', '.join(names)}")
    lines += [
        "",
        "[bold]examples[/]",
        "  dltrain model=cnn optim=adam",
        "  dltrain model=lstm trainer.epochs=10 optim.lr=0.003",
        "  dltrain data=diabetes loss=huber regularization.weight_decay=1e-4",
        "  dltrain -m optim=sgd,adam,rmsprop",
        "",
        "Every value: `dltrain --cfg job` prints the composed config. Hydra's own flags: --hydra-help.",
        "Runs are written to outputs/DATE/TIME-ID/ (metrics.csv, checkpoints/, summary.json).",
    ]
    console.print("\n".join(lines))
    return 0


SUBCOMMANDS: Dict[str, Callable[[List[str]], int]] = {}


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.exit(print_help(argv[1:]))
    if argv and argv[0] in SUBCOMMANDS:
        try:
            sys.exit(SUBCOMMANDS[argv[0]](argv[1:]))
        except UserError as e:
            report(e)
            sys.exit(e.exit_code)
    run_hydra(argv)
