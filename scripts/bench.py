"""Speed you can show (issue 9): dltrain against a hand-written loop, a DataLoader loop and
PyTorch Lightning, plus startup times and peak memory.

    python scripts/bench.py                          # everything, 3 repetitions (many minutes)
    python scripts/bench.py --quick                  # small sizes, 1 repetition: a smoke run
    python scripts/bench.py --workloads tiny,mlp --approaches lean,dltrain --json out.json
    python scripts/bench.py --parts ddp              # 1 process x 2 threads vs 2 x 1 (torchrun)
    python scripts/bench.py --parts speed --approaches dltrain,dltrain_nodiag   # diagnostics' cost

Each trial (one workload, one approach) runs in a fresh process (``--trial``, internal);
approaches are interleaved and their order rotates from one repetition to the next. The table
gives the median samples/s with the min–max spread, and the ratio to the lean loop (b). How
each approach is timed: :mod:`bench.trial`; the startup and memory commands:
:mod:`bench.startup`; data-parallel training on the CPU: :mod:`bench.ddp`. docs/benchmarks.md
holds a measured run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from bench import ddp, hotspots, report, startup
from bench.workloads import WORKLOADS, Workload

# dltrain runs with trainer.diagnostics=true; dltrain_nodiag with false (its overhead)
APPROACHES = ("dataloader", "lean", "lightning", "dltrain", "dltrain_nodiag")
PARTS = ("speed", "startup", "ddp")


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes and 1 repetition (unless --repeat): a smoke run")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)")
    p.add_argument("--approaches", default=",".join(APPROACHES),
                   help=f"comma-separated, from {', '.join(APPROACHES)} (default: all)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help="speed (the workloads), startup (commands and peak memory), ddp (the "
                        "cnn workload as 1 process x N threads against N processes x 1 thread "
                        "under torchrun, N = --threads); default all")
    p.add_argument("--repeat", type=int, help="repetitions of each trial (default 3, quick 1)")
    p.add_argument("--startup-repeat", type=int,
                   help="repetitions of each startup command (default 5, quick 2)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="torch threads in every trial (dltrain's trainer.threads; default: the "
                        "cores this process may use); the ddp part's N")
    p.add_argument("--device", default="cpu",
                   help="trainer.device of every speed trial (default cpu; not yet run on a GPU); "
                        "the ddp part always runs on the CPU")
    p.add_argument("--progress", default="rich", choices=("rich", "plain", "none"),
                   help="dltrain's trainer.progress (default rich: what a terminal shows)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a trial may take")
    p.add_argument("--json", type=Path, help="write every figure and trial here")
    p.add_argument("--markdown", type=Path, help="write the report (tables, targets) here")
    p.add_argument("--keep", action="store_true", help="keep the trials' folders (printed)")
    p.add_argument("--profile", action="store_true",
                   help="instead of the benchmark: one dltrain and one lean trial of each "
                        "workload under py-spy, and where their steps' time goes")
    p.add_argument("--profile-epochs", type=int, default=10,
                   help="with --profile: train this many times the workload's epochs, for "
                        "enough samples (default 10)")
    p.add_argument("--trial", help=argparse.SUPPRESS)  # internal: one trial, a JSON spec
    args = p.parse_args(argv)
    args.workloads = _choices(p, "--workloads", args.workloads, WORKLOADS)
    args.approaches = _choices(p, "--approaches", args.approaches, APPROACHES)
    args.parts = _choices(p, "--parts", args.parts, PARTS)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.startup_repeat is None:
        args.startup_repeat = 2 if args.quick else 5
    return args


def _choices(p: argparse.ArgumentParser, flag: str, value: str, known: Any) -> List[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        p.error(f"{flag}: unknown {', '.join(unknown) or '(empty)'}; known: {', '.join(known)}")
    return [n for n in known if n in names]  # the canonical order


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_trial(w: Workload, approach: str, rep: int, args: argparse.Namespace, tmp: Path,
              profile: bool = False) -> Dict[str, Any]:
    """One trial in a fresh process (under py-spy with ``profile``: its stacks in
    ``profile.txt`` of the trial's folder)."""
    record: Dict[str, Any] = {"workload": w.name, "approach": approach, "rep": rep}
    if approach == "lightning" and importlib.util.find_spec("lightning") is None:
        record["error"] = "not installed"
        return record
    where = tmp / f"{w.name}-{approach}-{rep}"
    where.mkdir(parents=True)
    spec = {"approach": approach, "threads": args.threads, "workdir": str(where),
            "out": str(where / "result.json"),
            "overrides": w.dltrain_overrides(quick=args.quick, threads=args.threads,
                                             progress=args.progress, device=args.device,
                                             epochs_scale=args.profile_epochs if profile else 1)}
    cmd = [sys.executable, __file__, "--trial", json.dumps(spec)]
    record["load_1min"] = os.getloadavg()[0]  # other work on the machine as the trial starts
    if profile:
        cmd = hotspots.command(cmd, where / "profile.txt")
    done = startup.run(cmd, cwd=where, output=where / "output.txt", timeout=args.timeout)
    record["folder"] = str(where)
    record.update(wall_s=done.wall_s, max_rss_mib=done.max_rss_mib)
    if done.rc == 0 and (where / "result.json").exists():
        record["result"] = json.loads((where / "result.json").read_text())
        expected = w.expected_train_size(args.quick)
        if expected and record["result"]["n_train"] != expected:
            record["warning"] = f"trained {record['result']['n_train']} samples, not {expected}"
        if record["result"]["threads_at_end"] != args.threads:
            record["warning"] = (f"ended with {record['result']['threads_at_end']} torch "
                                 f"threads, not {args.threads}")
    else:
        tail = (where / "output.txt").read_text(errors="replace").strip().splitlines()[-20:]
        record["error"] = f"exit status {done.rc}: " + (tail[-1] if tail else "no output")
        log("\n".join(tail))
    return record


def explain_difference(trials: List[Dict[str, Any]], workload: str, rep: int) -> None:
    """Once dltrain and the lean loop of one repetition are done: where their final weights
    differ, the largest difference, on dltrain's record (this process imports torch for it)."""
    by = {t["approach"]: t for t in trials
          if t["workload"] == workload and t["rep"] == rep and t.get("result")}
    if "dltrain" not in by or "lean" not in by or "weights_detail" in by["dltrain"]:
        return
    if by["dltrain"]["result"]["weights"] == by["lean"]["result"]["weights"]:
        by["dltrain"]["weights_detail"] = "identical"
        return
    import torch

    a, b = (torch.load(Path(by[x]["folder"]) / "weights.pt", weights_only=True)
            for x in ("dltrain", "lean"))
    diffs = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a}
    worst = max(diffs, key=diffs.get)
    by["dltrain"]["weights_detail"] = (f"differ: {sum(d > 0 for d in diffs.values())} of "
                                       f"{len(diffs)} tensors, largest |diff| "
                                       f"{diffs[worst]:.3g} in {worst}")
    log(f"{workload} rep {rep + 1}: dltrain's and the lean loop's weights "
        f"{by['dltrain']['weights_detail']}")


def measure_speed(args: argparse.Namespace, tmp: Path) -> List[Dict[str, Any]]:
    trials: List[Dict[str, Any]] = []
    total = args.repeat * len(args.workloads) * len(args.approaches)
    for rep in range(args.repeat):
        for name in args.workloads:
            turn = rep % len(args.approaches)  # rotate: no approach always runs first
            for approach in args.approaches[turn:] + args.approaches[:turn]:
                record = run_trial(WORKLOADS[name], approach, rep, args, tmp)
                trials.append(record)
                explain_difference(trials, name, rep)
                result = record.get("result")
                log(f"[{len(trials)}/{total}] {name} {approach} rep {rep + 1}: "
                    + (f"{result['samples_per_s']:,.0f} samples/s ({result['train_s']:.2f} s "
                       f"timed, {record['wall_s']:.1f} s process), {result['steps']} steps"
                       if result else record["error"])
                    + (f"  WARNING: {record['warning']}" if "warning" in record else ""))
    return trials


def markdown(info: Dict[str, Any], args: argparse.Namespace, speed: Dict[str, Any],
             startup_summary: Dict[str, Any], found: List[Dict[str, Any]],
             data_parallel: Dict[str, Any]) -> str:
    titles = {w: f"{w}: {WORKLOADS[w].title}" for w in WORKLOADS}
    out = [f"- machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
           f"Python {info['python']}, torch {info['torch']}, lightning {info['lightning']}",
           f"- dltrain: commit {info['dltrain_commit']}",
           f"- date: {info['date']}; load average {info['load_before'][0]:.2f} before, "
           f"{info['load_after'][0]:.2f} after (1 min); {info['minutes']:.1f} minutes",
           f"- command: `{info['command']}`",
           f"- device: {args.device}; torch threads: {args.threads} in every trial; "
           f"dltrain progress: {args.progress}; "
           f"repetitions: {args.repeat}" + (" (quick sizes)" if args.quick else "")]
    if speed:
        out += ["", "Training samples/s: median (min–max, ratio to the lean loop)", "",
                report.speed_table(speed, args.approaches, titles)]
        out += ["", "The process's CPU time over wall time in the timed region: median (min–max). "
                "With one torch thread, well under 1 means other work took the core.", "",
                report.cpu_table(speed, args.approaches, titles)]
        if "dltrain" in args.approaches:
            out += ["", "dltrain's samples/s timed three ways (medians)", "",
                    report.dltrain_table(speed, titles)]
    if "dltrain" in args.approaches and "dltrain_nodiag" in args.approaches and speed:
        out += ["", "trainer.diagnostics: dltrain with it on against off (medians). The train "
                "pass holds the gradient norms of the log steps; fit() adds the probe of each "
                "epoch's end (and the validation, checkpoints and files both have)", "",
                report.diagnostics_table(speed, titles)]
    if startup_summary:
        out += ["", f"Whole commands, {args.startup_repeat} runs each (median)", "",
                report.startup_table(startup_summary)]
    if data_parallel:
        n = args.threads
        out += ["", f"Data-parallel on the CPU, the {ddp.WORKLOAD} workload: 1 process x {n} "
                f"threads against {n} processes x 1 thread (and 1 x 1); training samples/s, "
                f"median (min–max) of {args.repeat} repetition(s)", "", ddp.table(data_parallel)]
    if found:
        out += ["", "Targets", "", report.targets_list(found)]
    return "\n".join(out)


def profile(args: argparse.Namespace) -> int:
    if hotspots.py_spy() is None:
        log("--profile needs py-spy: pip install py-spy")
        return 2
    approaches = [a for a in args.approaches if a in hotspots.LOOP_FRAMES]
    tmp = Path(tempfile.mkdtemp(prefix="dltrain-profile-"))
    try:
        for name in args.workloads:
            found, steps = {}, {}
            for approach in approaches:
                record = run_trial(WORKLOADS[name], approach, 0, args, tmp, profile=True)
                if "result" not in record:
                    log(f"{name} {approach}: {record['error']}")
                    continue
                found[approach] = hotspots.parts(Path(record["folder"]) / "profile.txt", approach)
                steps[approach] = record["result"]["steps"]
                log(f"{name} {approach}: {record['result']['samples_per_s']:,.0f} samples/s "
                    f"under py-spy, {steps[approach]} steps")
            print(f"\n{name}: {WORKLOADS[name].title}, epochs x{args.profile_epochs}, "
                  f"{args.threads} thread(s): µs per step, py-spy at {hotspots.RATE} Hz\n")
            print(hotspots.table(found, steps))
    finally:
        if args.keep:
            log(f"trial folders and py-spy stacks kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if args.trial:
        from bench import trial

        trial.main(json.loads(args.trial))
        return 0
    if args.profile:
        return profile(args)
    info = report.machine()
    info["command"] = shlex.join(["python", "scripts/bench.py", *argv])
    info["load_before"] = os.getloadavg()
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="dltrain-bench-"))
    trials: List[Dict[str, Any]] = []
    startup_records: Dict[str, Any] = {}
    data_parallel: Dict[str, Any] = {}
    try:
        if "speed" in args.parts:
            trials = measure_speed(args, tmp)
        if "startup" in args.parts:
            startup_records = startup.measure_startup(tmp / "startup", args.startup_repeat, log)
        if "ddp" in args.parts:
            data_parallel = ddp.measure(args, tmp / "ddp", log)
    finally:
        if args.keep:
            log(f"trial folders kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    info["minutes"] = (time.perf_counter() - began) / 60
    speed = report.summarize_speed(trials, args.approaches, args.workloads) if trials else {}
    startup_summary = report.summarize_startup(startup_records) if startup_records else {}
    found = report.targets(speed, startup_summary)
    text = markdown(info, args, speed, startup_summary, found, data_parallel)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v
                                       for k, v in vars(args).items()},
             "speed": speed, "startup": startup_summary, "targets": found,
             "trials": trials, "startup_runs": startup_records, "ddp": data_parallel},
            indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
