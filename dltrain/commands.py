"""The subcommands: ``dltrain check | replay | resume | eval | predict | export | summary |
compare``.

Each takes its own arguments and returns the exit code. What they need beyond argparse
(torch, the run folder code, the sweep summary) is imported when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List

from dltrain import launch
from dltrain.console import console
from dltrain.errors import UserError


def cmd_check(argv: List[str]) -> int:
    """Compose and validate a config, build its model and print the summary, without training."""
    parser = _parser("check", "validate a config, build its model and data, and print the "
                              "model's summary, without training")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDES",
                        help="the overrides a run takes: GROUP=OPTION (model=cnn) and "
                             "KEY=VALUE (optim.lr=0.01)")
    if any(arg in ("-h", "--help") for arg in argv):
        parser.parse_args(["--help"])  # prints the usage and exits 0
    # not parsed further: an override is Hydra's to read ("-" may begin a value)
    config = launch.compose(argv)
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
    parser.add_argument("run", metavar="RUN", nargs="?", help=RUN_HELP)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="values to change, e.g. trainer.epochs=50 (not groups: optim=sgd "
                             "is a new experiment)")
    _allow_data_change(parser)
    args = _parse(parser, argv, "run")
    from dltrain.rerun import (
        SAVED_CONFIG,
        apply_overrides,
        check_data,
        recorded_changes,
        run_folder,
        saved_config,
    )

    root = run_folder(args.run)
    config = apply_overrides(saved_config(root), args.overrides)  # fail here, before a folder exists
    if not any(o.startswith("data.") for o in args.overrides):  # asked for other data: no check
        launch.data_changes_allowed[:] = check_data(root, config, args.allow_data_change)
    run_dir = launch.new_run_dir()
    console.print(f"replaying {root} with its original config", markup=False)
    changes = recorded_changes(root)
    if changes:
        console.print("not replayed: the changes its resumes accepted\n  " + "\n  ".join(changes)
                      + "\n(add them as overrides to train with them from the start)", markup=False)
    launch.run_hydra(["--config-path", str((root / SAVED_CONFIG).parent.resolve()),
                      "--config-name", "config", f"hydra.run.dir={run_dir}",
                      "hydra/job_logging=none", *args.overrides])
    return 0


def cmd_resume(argv: List[str]) -> int:
    """Continue a run in its own folder from checkpoints/last.pt."""
    parser = _parser("resume", "continue RUN in its folder from checkpoints/last.pt, or finish "
                               "the unfinished jobs of a sweep")
    parser.add_argument("run", metavar="RUN", nargs="?", help=RUN_HELP)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="e.g. trainer.epochs=50 to extend a finished run")
    parser.add_argument("--allow-changes", action="store_true",
                        help="accept overrides that change the maths of the run (recorded in run.yaml)")
    _allow_data_change(parser)
    args = _parse(parser, argv, "run")
    from dltrain.sweeps import is_sweep

    if is_sweep(Path(args.run)):  # a sweep: its unfinished jobs, then its summary
        from dltrain.sweep_resume import resume_sweep

        return resume_sweep(Path(args.run), args.overrides, allow_changes=args.allow_changes,
                            allow_data_change=args.allow_data_change)
    from dltrain.rerun import prepare_resume

    plan = prepare_resume(args.run, args.overrides, args.allow_changes, args.allow_data_change)
    from dltrain.train.loop import TrainingInterrupted
    from dltrain.train.run import run_training

    try:
        summary = run_training(plan.config, plan.root, console, resume=True, event=plan.event,
                               command=launch.invocation)
    except TrainingInterrupted as e:
        launch.interrupted(plan.root, e.signum)
    return 1 if summary["status"] == "failed" else 0


def cmd_eval(argv: List[str]) -> int:
    parser = _parser("eval", "evaluate a run's best checkpoint (or a given checkpoint) in detail")
    parser.add_argument("target", metavar="RUN_OR_CHECKPOINT",
                        help="a run folder (its checkpoints/best.pt) or a checkpoint file")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the split to evaluate (default: test)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    _allow_data_change(parser)
    args = parser.parse_args(argv)
    _one_process("eval")
    from dltrain.evaluate import run_eval

    run_eval(args.target, args.split, args.device, console, allow_data_change=args.allow_data_change)
    return 0


def cmd_predict(argv: List[str]) -> int:
    """A run's model on new data: a CSV of predictions (and the metrics, when the input holds
    the true targets)."""
    parser = _parser("predict", "predict with a run's model on new data; writes a CSV")
    parser.add_argument("run", metavar="RUN", help="a run folder (or a checkpoint file)")
    parser.add_argument("input", metavar="INPUT",
                        help="a CSV file (- for standard input), an .npz or .npy file, an image "
                             "file or a folder of images")
    parser.add_argument("--out", metavar="FILE", help="write the CSV here (default: standard output)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help=CHECKPOINT_HELP)
    parser.add_argument("--batch-size", type=int, default=1024, metavar="N",
                        help="inputs per forward pass (default: 1024)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    args = parser.parse_args(argv)
    _one_process("predict")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    from dltrain.predict.command import run_predict

    run_predict(args.run, args.input, out=args.out, checkpoint=args.checkpoint,
                batch_size=args.batch_size, device=args.device, console=console)
    return 0


def cmd_export(argv: List[str]) -> int:
    """A run's model in a file another program can load, with a model card."""
    from dltrain.export.command import FORMATS  # no torch: the formats' names only

    parser = _parser("export", "export a run's model: onnx, safetensors or pt2 (torch.export)")
    parser.add_argument("run", metavar="RUN", help="a run folder (or a checkpoint file)")
    parser.add_argument("--format", default="onnx", metavar="|".join(FORMATS),
                        help="the file format (default: onnx)")
    parser.add_argument("--out", metavar="DIR", help="default: RUN/export/")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                        help=CHECKPOINT_HELP)
    args = parser.parse_args(argv)
    if args.format == "torchscript":
        raise UserError("--format torchscript: TorchScript is deprecated in PyTorch 2; "
                        "--format pt2 saves the model with torch.export, its successor")
    if args.format not in FORMATS:
        raise UserError(f"--format {args.format} is not known; known: {', '.join(FORMATS)}")
    _one_process("export")
    from dltrain.export.command import run_export

    run_export(args.run, args.format, out=args.out, checkpoint=args.checkpoint, console=console)
    return 0


def cmd_summary(argv: List[str]) -> int:
    parser = _parser("summary", "the table of a sweep's jobs; writes summary.csv, sweep.png "
                                "and curves.png")
    parser.add_argument("sweep", metavar="SWEEP_DIR",
                        help="a sweep's folder (outputs/multirun/DATE/TIME-ID)")
    args = parser.parse_args(argv)
    _one_process("summary")
    from dltrain.sweeps import summarize_sweep

    summarize_sweep(Path(args.sweep), console)
    return 0


def cmd_compare(argv: List[str]) -> int:
    """The learning curves of several runs, or of every job of a sweep, in one picture."""
    parser = _parser("compare", "overlay the learning curves of runs, or of every job of a "
                                "sweep, in compare.png, and print a table of their results")
    parser.add_argument("paths", nargs="*", metavar="RUN_OR_SWEEP",
                        help="run folders and sweep folders (a sweep stands for all its jobs)")
    parser.add_argument("--out", metavar="DIR", default=".",
                        help="write compare.png into DIR, created if needed (default: the "
                             "current folder)")
    args = parser.parse_intermixed_args(argv)  # folders on both sides of --out DIR
    _one_process("compare")
    from dltrain.compare import compare

    compare(args.paths, Path(args.out), console)
    return 0


def _one_process(command: str) -> None:
    from dltrain import distributed

    launch = distributed.detect()
    if launch is not None and launch.world_size > 1:
        raise UserError(f"dltrain {command} runs in one process: run it without torchrun or srun "
                        f"(this launch started {launch.world_size})")


# ---------------------------------------------------------------------------------------------
# argparse, with dltrain's one-line errors
RUN_HELP = "a run folder, e.g. outputs/DATE/TIME-ID"
CHECKPOINT_HELP = "the run's best.pt (default), its last.pt, or a checkpoint file"

def _allow_data_change(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-data-change", action="store_true",
                        help="go on although the data differ from the run's recorded "
                             "fingerprint (recorded)")


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
