"""Where a step's time goes: a trial sampled by py-spy (``--profile``), its stacks sorted into
the parts of a step, in microseconds per optimizer step.

py-spy samples the Python stacks of the trial from outside (``--nonblocking``: the trial is
never paused, where pausing it 500 times a second halved its speed; ``--idle``: a thread waiting
for the GIL or a lock counts too, so the parts add up to the wall time). A stack read from a
running process can mix in a stale outer frame, so the innermost frame that names a part
decides. Time spent in torch's C++ kernels is charged to the Python frame that called
them: the model's forward, the loss, backward, the optimizer. Only the main thread's stacks
under the training loop count (dltrain's ``fit``, the lean loop's function); a display's own
refresh thread competes for the cores and the GIL and shows up as time in the parts it slows.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

RATE = 500  # samples per second

# parts outside the timed region: a marker anywhere below the loop's frame decides
UNTIMED_PARTS: Sequence[Tuple[str, Tuple[str, ...]]] = (
    ("validation pass (not timed)", ("evaluate (dltrain/",)),
    ("epoch-end hooks (not timed)", ("on_epoch_end (",)),
)
# parts of a step: the innermost frame that carries a marker decides (a frame's first match)
STEP_PARTS: Sequence[Tuple[str, Tuple[str, ...]]] = (
    ("progress display", ("dltrain/train/progress.py", "(rich/")),
    ("metric sums", ("dltrain/train/metrics.py",)),
    ("batching: shuffle and slicing", ("dltrain/data/batching.py", "torch/utils/data/")),
    ("schedule", ("dltrain/optim.py",)),
    ("zero_grad", ("zero_grad (",)),
    ("optimizer step", ("torch/optim/", "torch/amp/grad_scaler.py")),
    ("backward", ("backward (torch/",)),
    ("loss", ("torch/nn/modules/loss.py", "cross_entropy (torch/nn/functional.py")),
    ("model forward", ("forward (", "_call_impl (")),
)
PARTS = (*UNTIMED_PARTS, *STEP_PARTS)
OTHER = "loop body: Python, randperm, index_select"
# the frame of each approach's training loop
LOOP_FRAMES = {"dltrain": "fit (dltrain/train/loop.py", "lean": "lean (bench/trial.py",
               "dataloader": "dataloader (bench/trial.py"}
# the lean loops' setup (imports, build_job) and end, outside their timing
UNTIMED = ("build_job (", "digest (", "_find_and_load (")


def py_spy() -> Optional[str]:
    return shutil.which("py-spy")


def command(trial_cmd: List[str], out: Path) -> List[str]:
    exe = py_spy()
    assert exe, "py-spy is not installed (pip install py-spy)"
    return [exe, "record", "--nonblocking", "--idle", "--function", "--format", "raw",
            "--rate", str(RATE), "--output", str(out), "--", *trial_cmd]


def parts(raw: Path, approach: str) -> Counter:
    """Samples per part of the step, from py-spy's raw (collapsed) stacks."""
    loop = LOOP_FRAMES[approach]
    found: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        at = next((i for i, f in enumerate(frames) if f.startswith(loop)), None)
        if at is None:
            continue
        below = frames[at + 1:]
        joined = ";".join(below)
        if approach != "dltrain" and any(m in joined for m in UNTIMED):
            continue
        part = next((name for name, markers in UNTIMED_PARTS
                     if any(m in joined for m in markers)), None)
        for frame in reversed(below):
            if part is not None:
                break
            part = next((name for name, markers in STEP_PARTS
                         if any(m in frame for m in markers)), None)
        found[part or OTHER] += int(count)
    return found


def table(found: Dict[str, Counter], steps: Dict[str, int]) -> str:
    """Microseconds per step of each part, side by side, and dltrain's excess over the lean
    loop."""
    names = list(found)
    order = [name for name, _ in PARTS if any(found[a][name] for a in names)]
    if any(found[a][OTHER] for a in names):
        order.append(OTHER)

    def us(a: str, part: str) -> float:
        return found[a][part] / RATE / steps[a] * 1e6

    head = ["part of a step", *(f"{a} µs/step" for a in names)]
    diff = "dltrain" in names and "lean" in names
    if diff:
        head.append("dltrain - lean")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    timed = [p for p in order if "not timed" not in p]
    for part in [*order, "total, timed parts"]:
        keys = timed if part.startswith("total") else [part]
        vals = [sum(us(a, p) for p in keys) for a in names]
        cells = [part, *(f"{v:.0f}" for v in vals)]
        if diff:
            d = vals[names.index("dltrain")] - vals[names.index("lean")]
            cells.append(f"{d:+.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
