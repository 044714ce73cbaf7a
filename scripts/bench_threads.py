"""How many CPU threads small and medium models should train with (issue 12, "Threads").

Each trial is a fresh ``python -m dltrain`` process on the CPU, so every setting pays the same
start-up and torch picks its threads as a user's run would. The trials are interleaved
(repetition, then workload, then setting) so that a change in the machine's load hits every
setting alike, and each cell is the median of ``--repeat`` trials.

    python scripts/bench_threads.py                       # every workload, 1 / 2 / default
    python scripts/bench_threads.py --repeat 5 --workloads default,mlp_medium
    python scripts/bench_threads.py --settings 1,2,null,auto

Columns: wall (the whole process, start-up included), train (summary.json's train_time_s) and
the worst trial's, samples/s (summary.json's mean_samples_per_s), and each setting's median train
time over the default's (< 1: faster than the default). With ``auto`` among the settings, its
row shows the count it chose (run.yaml's performance entry).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

# name -> (what it is, the overrides after trainer.device=cpu trainer.progress=none)
WORKLOADS: Dict[str, tuple] = {
    "default": ("the default run: MLP [256, 128] on digits, 10 epochs", ["trainer.epochs=10"]),
    "mlp_tiny": ("MLP [32] on digits, 10 epochs", ["model.hidden_sizes=[32]", "trainer.epochs=10"]),
    "lstm": ("LSTM 128 on digits (8 steps of 8), 3 epochs", ["model=lstm", "trainer.epochs=3"]),
    "cnn": ("CNN [32, 64] on digits, 3 epochs", ["model=cnn", "trainer.epochs=3"]),
    "mlp_medium": ("MLP [1024, 1024] on 784 features, 4096 samples, 3 epochs",
                   ["data=synthetic", "data.shape=[784]", "model.hidden_sizes=[1024,1024]",
                    "trainer.epochs=3"]),
    "cnn_28": ("CNN [32, 64] on 1x28x28, 4096 samples, 1 epoch",
               ["data=synthetic", "model=cnn", "trainer.epochs=1"]),
}
SETTINGS = ("1", "2", "null")


def trial(overrides: List[str], threads: str, folder: Path) -> Dict[str, float]:
    run_dir = folder / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "dltrain", *overrides, "trainer.device=cpu",
           "trainer.progress=none", f"trainer.threads={threads}", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    record = _performance(run_dir)
    return {"wall": wall, "train": summary["train_time_s"],
            "speed": summary["mean_samples_per_s"], "params": summary["parameters"],
            "acc": summary.get("test_acc", float("nan")), "chosen": record.get("threads")}


def _performance(run_dir: Path) -> dict:
    import yaml

    record = yaml.safe_load((run_dir / "run.yaml").read_text()) or {}
    return record.get("performance") or {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help="trainer.threads values, comma-separated (null: torch's default)")
    args = p.parse_args()
    names = args.workloads.split(",")
    settings = args.settings.split(",")
    results: Dict[tuple, List[Dict[str, float]]] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        for rep in range(args.repeat):
            for name in names:
                for threads in settings:
                    r = trial(WORKLOADS[name][1], threads, Path(tmp))
                    results.setdefault((name, threads), []).append(r)
                    print(f"rep {rep + 1} {name:<11} threads={threads:<4} wall {r['wall']:6.2f} s  "
                          f"train {r['train']:6.2f} s  {r['speed']:9.0f} samples/s",
                          file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
    print(f"{os.cpu_count()} cores, torch's default {_torch_threads()} threads; 1-minute load "
          f"average {min(load):.2f}-{max(load):.2f} during the trials; median of {args.repeat} "
          "fresh processes each\n")
    reference = "null" if "null" in settings else settings[0]
    print("| workload | parameters | threads | wall s | train s | worst train s | samples/s "
          "| train vs default |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        base = statistics.median(r["train"] for r in results[(name, reference)])
        for threads in settings:
            rs = results[(name, threads)]
            train = statistics.median(r["train"] for r in rs)
            chosen = rs[0]["chosen"]
            label = threads if threads != "auto" or chosen is None else f"auto ({chosen})"
            print(f"| {name} | {int(rs[0]['params']):,} | {label} | "
                  f"{statistics.median(r['wall'] for r in rs):.2f} | {train:.2f} | "
                  f"{max(r['train'] for r in rs):.2f} | "
                  f"{statistics.median(r['speed'] for r in rs):,.0f} | {train / base:.2f} |")
    print()
    for name in names:
        print(f"- {name}: {WORKLOADS[name][0]}")


def _torch_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


if __name__ == "__main__":
    main()
