"""Run the commands whose results the README and the issues quote, and print their figures.

Each command runs as a user would type it (a subprocess of `dltrain`), into a temporary folder;
the script prints the test metrics from each summary.json and the wall time.

    python scripts/measure_results.py            # the digits and diabetes acceptance runs
    python scripts/measure_results.py --adding   # also the adding problem (several minutes each)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASIC = [
    "",  # the default: MLP on digits
    "model=cnn optim=adam",
    "model=lstm",
    "model=gru",
    "model=rnn",
    "data=diabetes loss=mse",
    "data=diabetes loss=huber",
]
ADDING = [
    "data=adding data.seq_len=100 model=lstm",
    "data=adding data.seq_len=100 model=gru",
    "data=adding data.seq_len=100 model=rnn",
]


def run(overrides: str, root: Path) -> None:
    run_dir = root / str(len(list(root.iterdir())))
    cmd = [sys.executable, "-m", "dltrain", *overrides.split(), "trainer.progress=none",
           f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    label = f"dltrain {overrides}".strip()
    if proc.returncode != 0:
        print(f"{label:<50} FAILED (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return
    s = json.loads((run_dir / "summary.json").read_text())
    figures = "  ".join(f"{k} {s[k]:.4f}" for k in ("test_acc", "test_loss", "test_mae", "test_r2")
                        if isinstance(s.get(k), float))
    print(f"{label:<50} {figures}  epochs {s['epochs_completed']}  "
          f"train {s['train_time_s']:.1f}s  wall {wall:.1f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adding", action="store_true", help="also run the adding problem")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for overrides in BASIC + (ADDING if args.adding else []):
            run(overrides, Path(tmp))


if __name__ == "__main__":
    main()
