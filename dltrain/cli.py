"""The ``dltrain`` command: subcommands first, otherwise Hydra compose → validate → train.

Only Hydra, OmegaConf, rich and the schema are imported up front; torch is imported when there
is something to train, so ``--help`` and config errors answer at once.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import secrets
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dltrain import runs, schema
from dltrain.errors import UserError
from dltrain.registry import unknown_name

UID_ENV = "DLTRAIN_RUN_UID"
# the command the user typed, for run.yaml (replay hands Hydra a different command line)
_invocation: List[str] = ["dltrain", *sys.argv[1:]]
# a replay accepted with --allow-data-change hands the differences to the run it starts (Hydra
# runs it in this process), for its run.yaml
_data_changes_allowed: List[str] = []

# off a terminal rich would wrap lines and cut table cells at 80 columns; logs read better wide
_TTY = sys.stdout.isatty()
console = Console(highlight=False, soft_wrap=not _TTY,
                  width=None if _TTY else int(os.environ.get("COLUMNS", 200)))
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
    leftovers = {p.name for p in run_dir.iterdir()} - {".hydra", runs.LOCK}
    if all(name.endswith(".log") for name in leftovers):
        shutil.rmtree(run_dir, ignore_errors=True)
        # and the folders Hydra made for it (outputs/DATE/), up to outputs/, when left empty
        if any(p.name == "outputs" for p in run_dir.parents):
            for parent in run_dir.parents:
                if not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
                if parent.name == "outputs":
                    break


def train_task(cfg: DictConfig) -> Optional[float]:
    """Hydra's task function: one training job. Returns the best monitored validation metric,
    the objective that Hydra sweepers (Optuna) optimize.

    In a sweep a failing job is recorded as failed (summary.json) and the sweep goes on; a
    single run exits non-zero.
    """
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode.name == "MULTIRUN"
    try:
        config = schema.load_config(cfg)
        from dltrain.train.loop import TrainingInterrupted  # torch is imported here, not before
        from dltrain.train.run import run_training

        try:
            record = {"data_changes_allowed": _data_changes_allowed} if _data_changes_allowed else None
            summary = run_training(config, run_dir, console, command=_invocation, record=record)
        except TrainingInterrupted as e:
            interrupted(run_dir, e.signum)
    except KeyboardInterrupt:
        _remove_if_untrained(run_dir)
        raise
    except UserError as e:
        if not sweeping:
            report(e)
            _remove_if_untrained(run_dir)
            raise SystemExit(e.exit_code) from None
        summary = _record_failure(run_dir, str(e))
    except Exception as e:
        if not sweeping:
            raise
        summary = _record_failure(run_dir, f"{type(e).__name__}: {e}")
    if summary["status"] == "failed":
        report(UserError(f"training failed: {summary.get('reason')}"))
        if not sweeping:
            raise SystemExit(1)
        return math.nan  # sweepers (Optuna) record the trial as failed and go on
    return summary.get(f"best_{summary['monitor']}")


def _record_failure(run_dir: Path, reason: str) -> Dict[str, str]:
    """A sweep job that could not train still leaves a summary.json saying why."""
    summary = {"status": "failed", "reason": reason}
    runs.write_json(run_dir / runs.SUMMARY, summary)
    return summary


def interrupted(run_dir: Path, signum: int) -> None:
    import signal

    from dltrain.train.interrupt import exit_code

    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    err_console.print(
        f"stopped by {name}: checkpoints/last.pt is saved. Continue with:\n"
        f"  dltrain resume {shlex.quote(str(run_dir))}", markup=False)
    raise SystemExit(exit_code(signum))


_NOISE = ("full_key:", "To append to your config", "reference_type=", "object_type=",
          "Config search path", "provider=", "Set the environment variable HYDRA_FULL_ERROR")


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
    match = re.search(r"Error merging override (\S+?)=(.*)", lines[0] if lines else "")
    converted = re.search(r"could not be converted to (\w+)|is not a valid (bool)", " ".join(lines))
    if match and converted:
        target = converted.group(1) or converted.group(2)
        kind = {"Integer": "a whole number (int)", "Float": "a number (float)",
                "bool": "true or false (bool)"}.get(
            target, target)
        return f"{match.group(1)}={match.group(2)!r} is not allowed: must be {kind}"
    if lines and lines[0].startswith("In 'train': "):
        lines[0] = lines[0][len("In 'train': "):]
    return "\n".join(lines)


def compose(overrides: List[str]) -> schema.TrainConfig:
    """The validated config of a single run, composed as Hydra would, without running it."""
    for arg in overrides:
        group, _, option = arg.partition("=")
        if group == "hpo" and option not in ("", "null"):
            raise UserError(f"{arg} is a search space for a sweep: run it with -m "
                            f"(dltrain -m {arg})")
        options = schema.GROUPS.get(group)
        if options is not None and option not in options and "," not in option:
            raise UserError(unknown_name(group, option, options))
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _setup_hydra()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3", job_name="dltrain"):
            cfg = hydra_compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(clean_hydra_error(e)) from None
    return schema.load_config(cfg)


def _setup_hydra() -> None:
    schema.register_configs()
    OmegaConf.register_new_resolver("dltrain_uid", run_uid, replace=True)
    from dltrain import hpo

    OmegaConf.register_new_resolver(hpo.RESOLVER, hpo.direction, replace=True)


def check_output_dirs(argv: List[str]) -> None:
    """An explicit hydra.run.dir / hydra.sweep.dir must be creatable and must not hold a run:
    Hydra would overwrite its .hydra/ record before dltrain could refuse."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        path = Path(value)
        if key == "hydra.run.dir" and any((path / name).exists() for name in
                                          ("checkpoints", "metrics.csv", "summary.json")):
            raise UserError(f"{path} already holds a run; choose a new {key}, "
                            f"or continue that run: dltrain resume {path}")
        if key == "hydra.sweep.dir" and path.is_dir() and any((p / ".hydra").is_dir() for p in path.iterdir()):
            raise UserError(f"{path} already holds a sweep's jobs; choose a new {key}")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise UserError(f"{key}={value}: cannot create a folder there "
                            f"({existing} is {'not a folder' if not existing.is_dir() else 'not writable'})")


def run_hydra(argv: List[str]) -> None:
    """Hydra's own command line: a run, a sweep (-m), or Hydra's flags (--cfg, --info, ...)."""
    import logging

    import hydra

    _setup_hydra()
    # Optuna's storage layer (alembic) logs every plugin it loads at INFO: noise in a sweep
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        check_output_dirs(argv)
        if not any(arg.startswith("-") for arg in argv):
            # a single run is validated before Hydra makes a folder for it; sweeps and Hydra's
            # flags are left to Hydra, and each job validates itself in train_task
            compose(argv)
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")(train_task)()


# ---------------------------------------------------------------------------------------------
# subcommands
def cmd_check(argv: List[str]) -> int:
    """Compose and validate a config, build its model and print the summary, without training."""
    config = compose(argv)
    from dltrain.train.report import count_parameters, model_table
    from dltrain.train.run import build_job

    job = build_job(config)
    info = job.data.info
    console.print(model_table(job.model, f"{config.model.name} on {info.name} ({info.task}, "
                                         f"input {tuple(info.input_shape)}, {info.num_outputs} outputs)"))
    console.print(f"config ok: {count_parameters(job.model):,} parameters, device {job.device}, "
                  f"train/val/test {len(job.data.train)}/{len(job.data.val)}/{len(job.data.test)}, "
                  f"loss {type(job.criterion).__name__}, monitor {job.monitor} ({job.mode})",
                  markup=False)
    return 0


def cmd_replay(argv: List[str]) -> int:
    """A new run with a saved run's config (plus overrides), in a new folder."""
    parser = _parser("replay", "a new run with the saved config of RUN, plus overrides")
    parser.add_argument("run", metavar="RUN", nargs="?")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    _allow_data_change(parser)
    args = _parse(parser, argv, "run")
    from dltrain.rerun import (SAVED_CONFIG, apply_overrides, check_data, recorded_changes,
                               run_folder, saved_config)

    root = run_folder(args.run)
    config = apply_overrides(saved_config(root), args.overrides)  # fail here, before a folder exists
    if not any(o.startswith("data.") for o in args.overrides):  # asked for other data: no check
        _data_changes_allowed[:] = check_data(root, config, args.allow_data_change)
    now = datetime.datetime.now()
    run_dir = Path("outputs") / now.strftime("%Y-%m-%d") / f"{now:%H-%M-%S}-{run_uid()}"
    console.print(f"replaying {root} with its original config", markup=False)
    changes = recorded_changes(root)
    if changes:
        console.print("not replayed: the changes its resumes accepted\n  " + "\n  ".join(changes)
                      + "\n(add them as overrides to train with them from the start)", markup=False)
    run_hydra(["--config-path", str((root / SAVED_CONFIG).parent.resolve()), "--config-name", "config",
               f"hydra.run.dir={run_dir}", "hydra/job_logging=none", *args.overrides])
    return 0


def cmd_resume(argv: List[str]) -> int:
    """Continue a run in its own folder from checkpoints/last.pt."""
    parser = _parser("resume", "continue RUN in its folder from checkpoints/last.pt")
    parser.add_argument("run", metavar="RUN", nargs="?")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="e.g. trainer.epochs=50 to extend a finished run")
    parser.add_argument("--allow-changes", action="store_true",
                        help="accept overrides that change the maths of the run (recorded in run.yaml)")
    _allow_data_change(parser)
    args = _parse(parser, argv, "run")
    from dltrain.rerun import prepare_resume

    plan = prepare_resume(args.run, args.overrides, args.allow_changes, args.allow_data_change)
    from dltrain.train.loop import TrainingInterrupted
    from dltrain.train.run import run_training

    try:
        summary = run_training(plan.config, plan.root, console, resume=True, event=plan.event,
                               command=_invocation)
    except TrainingInterrupted as e:
        interrupted(plan.root, e.signum)
    return 1 if summary["status"] == "failed" else 0


def _allow_data_change(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-data-change", action="store_true",
                        help="go on although the data differ from the run's recorded "
                             "fingerprint (recorded)")


def cmd_eval(argv: List[str]) -> int:
    parser = _parser("eval", "evaluate a run's best checkpoint (or a given checkpoint) in detail")
    parser.add_argument("target", metavar="RUN_OR_CHECKPOINT")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _allow_data_change(parser)
    args = parser.parse_args(argv)
    from dltrain.evaluate import run_eval

    run_eval(args.target, args.split, args.device, console, allow_data_change=args.allow_data_change)
    return 0


def cmd_summary(argv: List[str]) -> int:
    parser = _parser("summary", "the table of a sweep's jobs; writes summary.csv and sweep.png")
    parser.add_argument("sweep", metavar="SWEEP_DIR")
    args = parser.parse_args(argv)
    from dltrain.sweeps import summarize_sweep

    summarize_sweep(Path(args.sweep), console)
    return 0


def _parse(parser: argparse.ArgumentParser, argv: List[str], required: str) -> argparse.Namespace:
    # argparse would also call the optional KEY=VALUE list "required" in its message
    args = parser.parse_args(argv)
    if getattr(args, required) is None:
        raise UserError(f"{parser.prog}: name the run folder, e.g. {parser.prog} outputs/DATE/TIME-ID")
    return args


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other mistake
        raise UserError(f"{self.prog}: {message}")


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=f"dltrain {name}", description=description)


SUBCOMMANDS: Dict[str, Callable[[List[str]], int]] = {
    "check": cmd_check,
    "replay": cmd_replay,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "summary": cmd_summary,
}


def print_help() -> int:
    lines = [
        "[bold]dltrain[/] - train PyTorch models from Hydra configs.",
        "",
        "[bold]usage[/]",
        "  dltrain [GROUP=OPTION ...] [KEY=VALUE ...]     train one model",
        "  dltrain -m GROUP=A,B KEY=X,Y ...               sweep: one job per combination",
        "  dltrain check [OVERRIDES]                      validate, build and summarize the model",
        "  dltrain replay RUN [OVERRIDES]                 a new run with RUN's saved config",
        "  dltrain resume RUN [OVERRIDES]                 continue RUN from its last checkpoint",
        "  dltrain eval RUN_OR_CHECKPOINT [--split val]   detailed metrics of the best checkpoint",
        "  dltrain summary SWEEP_DIR                      the table of a sweep's jobs",
        "",
        "[bold]config groups[/] (default first)",
    ]
    defaults = {"model": "mlp", "activation": "relu", "loss": "auto", "optim": "adam",
                "sched": "none", "data": "digits", "regularization": "none", "logger": "csv"}
    groups = dict(schema.GROUPS)
    for folder in ("regularization", "experiment", "hpo"):
        groups[folder] = {p.stem: None for p in sorted((config_dir() / folder).glob("*.yaml"))}
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
        "  dltrain -m hpo=digits_mlp",
        "",
        "Every value: `dltrain --cfg job` prints the composed config. Hydra's own flags: --hydra-help.",
        "Runs are written to outputs/DATE/TIME-ID/ (metrics.csv, checkpoints/, summary.json).",
    ]
    console.print("\n".join(lines))
    return 0


def main(argv: Optional[List[str]] = None) -> None:
    global _invocation
    argv = list(sys.argv[1:] if argv is None else argv)
    _invocation = ["dltrain", *argv]
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.exit(print_help())
    if argv and argv[0] in ("-V", "--version"):
        from dltrain import __version__

        console.print(f"dltrain {__version__}", markup=False)
        sys.exit(0)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            sys.exit(SUBCOMMANDS[argv[0]](argv[1:]))
        if argv and not argv[0].startswith("-") and "=" not in argv[0]:
            raise UserError(unknown_name("command", argv[0], SUBCOMMANDS)
                            + "; or give config overrides as KEY=VALUE (dltrain --help)")
        run_hydra(argv)
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # outside the training loop, which handles Ctrl-C itself
        err_console.print("interrupted", markup=False)
        sys.exit(130)
