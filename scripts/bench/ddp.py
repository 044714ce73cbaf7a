"""Data-parallel on the CPU (``--parts ddp``): the ``cnn`` workload trained by one process with
N torch threads against N processes of one thread each under torchrun, on a machine with N
cores (N is ``--threads``), so that the cost of DDP's communication is measured, not guessed.

Three configurations run the real command a user types, each a fresh process tree per trial,
interleaved, their order rotating from one repetition to the next:

* ``threads``: ``python -m dltrain ... trainer.threads=N``, one process;
* ``ddp``: ``python -m torch.distributed.run --standalone --nproc_per_node=N -m dltrain ...
  trainer.threads=1``: the same global batch, each process taking 1/N of every batch;
* ``one``: ``python -m dltrain ... trainer.threads=1``, one process, one thread: the baseline
  both speed-ups are read against, and the control of the weight comparison (below).

Each trial is timed twice: dltrain's own samples/s of the training pass (metrics.csv, global
samples over rank 0's time from the shuffle to the epoch's host sync, the validation pass and the
start-up left out; the figure the speed part's "dltrain's own epoch_time_s" column gives), and
the whole command from outside (start-up of every process, the process group, data, the test
pass, curves.png). The CPU time of the whole process tree (``RUSAGE_CHILDREN``: every descendant
the tree reaped) over that wall time tells how many cores the command kept busy.

The weights: in the first repetition, each configuration's ``checkpoints/last.pt`` model is
loaded and the pairs compared (largest absolute difference, relative L2 norm of the difference).
Adam turns rounding differences into visible ones (a weight whose gradient is near zero moves by
about ``lr`` in the direction the rounding picks), so the control pair (one thread against N
threads, one process each) gives the size of a difference that is rounding alone. With two
repetitions or more, each configuration's first run is also compared with its second: a
configuration that reproduces its own weights bit for bit differs from another only by the order
of its floating-point operations.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from bench import startup
from bench.report import k, spread
from bench.workloads import WORKLOADS

WORKLOAD = "cnn"
CONFIGS = ("threads", "ddp", "one")
TOLERANCE = 1e-5  # the weights "equal" when no element differs by more
# the pairs of configurations whose final weights are compared: DDP against the one it replaces,
# then the control (one process, another thread count), then DDP against the same per-process
# thread count
PAIRS = (("ddp", "threads"), ("one", "threads"), ("ddp", "one"))


def title(config: str, n: int) -> str:
    return {"threads": f"1 process x {n} threads", "ddp": f"{n} processes x 1 thread (torchrun)",
            "one": "1 process x 1 thread"}[config]


def command(config: str, n: int, overrides: List[str], run_dir: Path) -> List[str]:
    threads = n if config == "threads" else 1
    args = [*overrides, f"trainer.threads={threads}", f"hydra.run.dir={run_dir}"]
    if config == "ddp":
        # torchrun sets OMP_NUM_THREADS=1 in each worker (unless the environment sets it)
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={n}", "-m", "dltrain", *args]
    return [sys.executable, "-m", "dltrain", *args]


def overrides(args: Any) -> List[str]:
    """The ``cnn`` workload's overrides, on the CPU, less its thread count (set per config)."""
    found = WORKLOADS[WORKLOAD].dltrain_overrides(quick=args.quick, threads=1,
                                                  progress=args.progress, device="cpu")
    return [o for o in found if not o.startswith("trainer.threads=")]


def run_one(config: str, n: int, rep: int, args: Any, tmp: Path) -> Dict[str, Any]:
    where = tmp / f"{config}-{rep}"
    where.mkdir(parents=True)
    run_dir = where / "run"
    record: Dict[str, Any] = {"config": config, "rep": rep, "folder": str(run_dir),
                              "load_1min": os.getloadavg()[0]}  # other work as it starts
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # cwd: dltrain's launch markers (outputs/.launches) stay in the trial's folder
    done = startup.run(command(config, n, overrides(args), run_dir), cwd=where,
                       output=where / "output.txt", timeout=args.timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record.update(wall_s=done.wall_s, cpu_s=cpu, cores_busy=cpu / done.wall_s,
                  max_rss_mib=done.max_rss_mib)  # the largest single process of the tree
    summary_path = run_dir / "summary.json"
    if done.rc != 0 or not summary_path.exists():
        lines = (where / "output.txt").read_text(errors="replace").strip().splitlines()
        # the workers' own output comes before torchrun's report of their failure
        agent = [i for i, line in enumerate(lines) if "torch/distributed/elastic" in line]
        tail = [line for line in lines[:agent[0] if agent else None] if line.strip()][-20:]
        record["error"] = f"exit status {done.rc}: " + (tail[-1].strip() if tail else "no output")
        record["output_tail"] = "\n".join(tail)
        return record
    summary = json.loads(summary_path.read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_s = sum(float(r["epoch_time_s"]) for r in rows)
    record.update(samples_per_s=summary["mean_samples_per_s"], train_s=train_s,
                  outside_train_s=done.wall_s - train_s, steps=summary["steps"],
                  processes=summary.get("processes", 1), status=summary["status"],
                  train_loss=float(rows[-1]["train_loss"]), val_loss=float(rows[-1]["val_loss"]),
                  test_acc=summary.get("test_acc"))
    expected = n if config == "ddp" else 1
    if record["processes"] != expected:  # e.g. N copies of a single-process run
        record["error"] = f"trained on {record['processes']} process(es), not {expected}"
    return record


def measure(args: Any, tmp: Path, log: Callable[[str], None]) -> Dict[str, Any]:
    """Every configuration ``args.repeat`` times, interleaved, then their final weights
    compared (:func:`compare_weights`). Returns the records, the summary and the comparison."""
    n = args.threads
    if n < 2:
        return {"error": f"needs --threads of 2 or more (the processes to compare), not {n}"}
    records: List[Dict[str, Any]] = []
    total = args.repeat * len(CONFIGS)
    for rep in range(args.repeat):
        turn = rep % len(CONFIGS)
        for config in CONFIGS[turn:] + CONFIGS[:turn]:
            record = run_one(config, n, rep, args, tmp)
            records.append(record)
            if "output_tail" in record:
                log(record["output_tail"])
            log(f"[ddp {len(records)}/{total}] {title(config, n)} rep {rep + 1}: "
                + (f"{record['samples_per_s']:,.0f} samples/s ({record['train_s']:.2f} s "
                   f"training), {record['wall_s']:.1f} s whole command, "
                   f"{record['cores_busy']:.2f} cores busy, {record['steps']} steps"
                   if "error" not in record else record["error"]))
    folders = [{r["config"]: Path(r["folder"]) for r in records
                if r["rep"] == rep and "error" not in r} for rep in range(min(args.repeat, 2))]
    weights = compare_weights(*folders)
    for pair, gap in weights.items():
        log(f"ddp weights, {pair}: " + (gap["error"] if "error" in gap else
                                         f"largest |diff| {gap['max_abs']:.3g}, "
                                         f"relative L2 {gap['rel_l2']:.3g}"))
    return {"processes": n, "workload": WORKLOAD, "quick": args.quick, "records": records,
            "summary": summarize(records), "weights": weights}


def compare_weights(first: Dict[str, Path],
                    second: Optional[Dict[str, Path]] = None) -> Dict[str, Dict[str, Any]]:
    """For each pair of :data:`PAIRS` in the ``first`` repetition, then each configuration's
    ``first`` run against its ``second``: the largest absolute difference of their final weights
    (``last.pt``'s model), the norm of the difference over the norm of the first, and how many
    elements differ by more than :data:`TOLERANCE`."""
    import torch

    pairs = {f"{a} vs {b}": (first.get(a), first.get(b)) for a, b in PAIRS}
    if second is not None:
        pairs.update({f"{c}: rep 1 vs rep 2": (first.get(c), second.get(c)) for c in CONFIGS})
    out: Dict[str, Dict[str, Any]] = {}
    for name, folders in pairs.items():
        if None in folders:
            out[name] = {"error": "not run"}
            continue
        wa, wb = (torch.load(f / "checkpoints" / "last.pt", weights_only=True)["model"]
                  for f in folders)
        if wa.keys() != wb.keys():
            out[name] = {"error": "the state dicts have different keys"}
            continue
        va = torch.cat([wa[key].double().flatten() for key in wa])
        vb = torch.cat([wb[key].double().flatten() for key in wa])
        diff = (va - vb).abs()
        largest = {key: (wa[key].double() - wb[key].double()).abs().max().item() for key in wa}
        worst = max(largest, key=largest.get)
        out[name] = {"max_abs": largest[worst], "worst_tensor": worst if largest[worst] else None,
                     "rel_l2": ((va - vb).norm() / va.norm()).item(),
                     "beyond_tolerance": int((diff > TOLERANCE).sum().item()),
                     "equal": bool(diff.max().item() <= TOLERANCE), "elements": diff.numel()}
    return out


def summarize(records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per configuration: samples/s, whole-command wall time, time outside the training pass and
    cores busy (median, min, max); the ratios of medians to 1 process x N threads."""
    out: Dict[str, Any] = {"configs": {}}
    for config in CONFIGS:
        ok = [r for r in records if r["config"] == config and "error" not in r]
        failed = [r for r in records if r["config"] == config and "error" in r]
        if not ok:
            out["configs"][config] = {"error": failed[0]["error"] if failed else "not run"}
            continue
        out["configs"][config] = {
            key: spread([r[key] for r in ok])
            for key in ("samples_per_s", "wall_s", "outside_train_s", "cores_busy", "train_loss",
                        "val_loss")}
        out["configs"][config].update(steps=sorted({r["steps"] for r in ok}), failed=len(failed))
    base = out["configs"].get("threads", {})
    for config, stats in out["configs"].items():
        if "samples_per_s" in stats and "samples_per_s" in base:
            speed, base_speed = stats["samples_per_s"], base["samples_per_s"]
            stats["speed_ratio"] = speed["median"] / base_speed["median"]
            # the fastest trial of each: the least disturbed by other work on the machine
            stats["best_ratio"] = speed["max"] / base_speed["max"]
            stats["wall_ratio"] = stats["wall_s"]["median"] / base["wall_s"]["median"]
    steps = {s for stats in out["configs"].values() for s in stats.get("steps", [])}
    out["same_steps"] = len(steps) == 1
    return out


def table(result: Dict[str, Any]) -> str:
    """The Markdown of the part: the timings, the weights, the last epoch's losses."""
    if "error" in result:
        return f"Data-parallel part not run: {result['error']}"
    n, configs = result["processes"], result["summary"]["configs"]

    def span(x: Dict[str, float], fmt: str = ".1f") -> str:
        return f"{x['median']:{fmt}} ({x['min']:{fmt}}–{x['max']:{fmt}})"

    base = f"/ 1 x {n} threads"
    lines = [f"| configuration | steps | training samples/s | {base} | best / best | "
             f"whole command s | {base} | outside training s | cores busy (whole command) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config in CONFIGS:
        c = configs[config]
        if "error" in c:
            lines.append(f"| {title(config, n)} | {c['error']} | | | | | | | |")
            continue
        v = c["samples_per_s"]
        cells = [title(config, n), "/".join(map(str, c["steps"])),
                 f"**{k(v['median'])}** ({k(v['min'])}–{k(v['max'])})",
                 f"**{c['speed_ratio']:.2f}**", f"{c['best_ratio']:.2f}", span(c["wall_s"]),
                 f"{c['wall_ratio']:.2f}", span(c["outside_train_s"]),
                 span(c["cores_busy"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")

    again = any(": " in pair for pair in result["weights"])
    lines += ["", "Final weights (`checkpoints/last.pt`): the configurations against each "
              "other in the first repetition"
              + (", then each against itself in the second" if again else ""), "",
              f"| pair | largest abs. difference | in | relative L2 | elements beyond "
              f"{TOLERANCE:g} | all within {TOLERANCE:g} |", "|---|---|---|---|---|---|"]
    for pair, gap in result["weights"].items():
        if ": " in pair:  # one configuration, two repetitions
            config, reps = pair.split(": ")
            name = f"{title(config, n)}, {reps.replace('rep', 'repetition')}"
        else:
            a, b = pair.split(" vs ")
            name = f"{title(a, n)} vs {title(b, n)}"
        if "error" in gap:
            lines.append(f"| {name} | {gap['error']} | | | | |")
            continue
        lines.append(f"| {name} | {gap['max_abs']:.2g} | {gap['worst_tensor'] or '-'} | "
                     f"{gap['rel_l2']:.2g} | {gap['beyond_tolerance']:,} of {gap['elements']:,} | "
                     f"{'yes' if gap['equal'] else 'no'} |")

    losses = [f"{title(c, n)}: train {configs[c]['train_loss']['median']:.6f}, "
              f"val {configs[c]['val_loss']['median']:.6f}"
              for c in CONFIGS if "train_loss" in configs[c]]
    return "\n".join(lines + ["", "Last epoch's losses (medians): " + "; ".join(losses) + "."])
