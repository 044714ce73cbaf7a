"""Train every model with every option of every other group for one epoch on a small data set.

Checks that all options compose (nothing raises, the loss is finite) and prints one line per
combination. Not a test: it takes a minute or two; run it after changing a builder.

    python scripts/check_combinations.py [--epochs 1]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time

from rich.console import Console

from dltrain.schema import GROUPS, LOSSES_FOR_TASK, load_config
from dltrain.train.run import run_training

REGULARIZATION = {
    "none": {},
    "dropout": {"dropout": 0.3},
    "l2": {"weight_decay": 1e-4},
    "l1": {"l1": 1e-5},
    "batchnorm": {"batch_norm": True},
}


def combinations():
    for model in GROUPS["model"]:
        for group in ("activation", "optim", "sched"):
            for option in GROUPS[group]:
                yield model, {group: {"name": option}}, "digits"
        for name, reg in REGULARIZATION.items():
            yield model, {"regularization": reg}, "digits"
        for task, data in (("classification", "digits"), ("regression", "diabetes")):
            for loss in LOSSES_FOR_TASK[task]:
                yield model, {"loss": {"name": loss}}, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    failures = 0
    count = 0
    start = time.perf_counter()
    for model, extra, data in combinations():
        raw = {
            "model": {"name": model}, "activation": {"name": "relu"}, "optim": {"name": "adam"},
            "data": {"name": data},
            "trainer": {"epochs": args.epochs, "progress": "none", "device": "cpu"},
            **extra,
        }
        label = f"{model:<5} {data:<9} " + " ".join(f"{g}={v.get('name', v)}" for g, v in extra.items())
        try:
            with tempfile.TemporaryDirectory() as tmp:
                summary = run_training(load_config(raw), tmp, Console(file=io.StringIO()))
            loss = summary.get("test_loss", float("nan"))
            ok = summary["status"] != "failed" and math.isfinite(loss)
            metric = summary.get("test_acc", summary.get("test_r2"))
            print(f"{'ok  ' if ok else 'FAIL'} {label:<60} test_loss {loss:.4f}  metric {metric:.4f}")
        except Exception as e:  # report every failing combination, not just the first
            ok = False
            print(f"FAIL {label:<60} {type(e).__name__}: {e}")
        failures += not ok
        count += 1
    print(f"{count - failures} of {count} combinations trained in {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
