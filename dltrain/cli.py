"""The ``dltrain`` command: subcommands first, otherwise Hydra compose → validate → train.

The subcommands live in :mod:`dltrain.commands`, the Hydra side in :mod:`dltrain.launch`. Only
Hydra, OmegaConf, rich and the schema are imported up front; torch is imported when there is
something to train, so ``--help`` and config errors answer at once.
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Optional

from dltrain import completion, launch, schema
from dltrain.commands import (
    cmd_check,
    cmd_compare,
    cmd_eval,
    cmd_export,
    cmd_predict,
    cmd_replay,
    cmd_resume,
    cmd_summary,
)
from dltrain.console import console, err_console, report
from dltrain.errors import UserError
from dltrain.launch import config_dir
from dltrain.registry import unknown_name

SUBCOMMANDS: Dict[str, Callable[[List[str]], int]] = {
    "check": cmd_check,
    "replay": cmd_replay,
    "resume": cmd_resume,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "export": cmd_export,
    "summary": cmd_summary,
    "compare": cmd_compare,
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
        "  dltrain resume SWEEP_DIR                       finish a sweep's unfinished jobs",
        "  dltrain eval RUN_OR_CHECKPOINT [--split val]   detailed metrics of the best checkpoint",
        "  dltrain predict RUN INPUT [--out FILE]         predictions of RUN's model on new data",
        "  dltrain export RUN [--format onnx|safetensors|pt2]   the model for other programs",
        "  dltrain summary SWEEP_DIR                      the table of a sweep's jobs",
        "  dltrain compare RUN_OR_SWEEP... [--out DIR]    the curves of several runs in one picture",
        "  dltrain COMMAND --help                         the arguments of each command",
        "",
        "[bold]config groups[/] (default first)",
    ]
    defaults = {"model": "mlp", "activation": "relu", "loss": "auto", "optim": "adam",
                "sched": "none", "data": "digits", "regularization": "none", "logger": "csv"}
    groups = dict(schema.GROUPS)
    for folder in ("regularization", "experiment", "hpo", "debug"):
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if completion.handles(argv):  # the shell asks what Tab may complete (dltrain -sc query=bash)
        sys.exit(completion.main(argv, SUBCOMMANDS))
    launch.invocation[:] = ["dltrain", *argv]
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.exit(print_help())
    if argv and argv[0] in ("-V", "--version"):
        from dltrain.version import __version__

        console.print(f"dltrain {__version__}", markup=False)
        sys.exit(0)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            sys.exit(SUBCOMMANDS[argv[0]](argv[1:]))
        if argv and not argv[0].startswith("-") and "=" not in argv[0]:
            raise UserError(unknown_name("command", argv[0], SUBCOMMANDS)
                            + "; or give config overrides as KEY=VALUE (dltrain --help)")
        launch.run_hydra(argv)
    except UserError as e:
        report(e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # outside the training loop, which handles Ctrl-C itself
        err_console.print("interrupted", markup=False)
        sys.exit(130)
