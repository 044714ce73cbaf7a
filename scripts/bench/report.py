"""From trial records to figures: medians and spreads, ratios to the lean loop, the issue's
targets (met or missed, by how much), and the report as Markdown tables."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

# issue 9's CPU targets
SPEED_RATIO = 0.97  # dltrain >= 0.97x the lean loop
FAST_COMMAND = 0.5  # --help and a config error <= 0.5x `python -c "import torch"`
FIRST_STEP_SLACK_S = 0.5  # first step <= the floor + 0.5 s
MEMORY_RATIO = 1.2  # peak RSS of the default run <= 1.2x the lean loop's

APPROACH_TITLES = {"dataloader": "(c) DataLoader loop", "lean": "(b) lean loop",
                   "lightning": "(d) Lightning", "dltrain": "(a) dltrain",
                   "dltrain_nodiag": "(a') dltrain, diagnostics off"}
DIAGNOSTICS_OVERHEAD = 0.05  # trainer.diagnostics costs at most 5 % of fit()


def spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def summarize_speed(trials: List[Dict[str, Any]], approaches: List[str],
                    workloads: List[str]) -> Dict[str, Any]:
    """Per workload: each approach's samples/s (median, min, max), its ratio to the lean loop,
    the steps each took, and whether dltrain's final weights equal the lean loop's."""
    out: Dict[str, Any] = {}
    for w in workloads:
        rows = [t for t in trials if t["workload"] == w]
        entry: Dict[str, Any] = {"approaches": {}}
        for a in approaches:
            ok = [t["result"] for t in rows if t["approach"] == a and t.get("result")]
            failed = [t for t in rows if t["approach"] == a and not t.get("result")]
            if not ok:
                entry["approaches"][a] = {"error": failed[0]["error"] if failed else "not run"}
                continue
            stats: Dict[str, Any] = spread([r["samples_per_s"] for r in ok])
            # CPU time of the process over wall time, in the timed region (see trial.Stopwatch)
            stats["cpu_share"] = spread([r["cpu_s"] / r["train_s"] for r in ok])
            stats["steps"] = sorted({r["steps"] for r in ok})
            stats["n_train"] = sorted({r["n_train"] for r in ok})
            stats["failed"] = len(failed)
            stats["fit_s"] = spread([r["fit_s"] for r in ok]) if "fit_s" in ok[0] else None
            if a == "dltrain":
                for key in ("self_timed_samples_per_s", "fit_less_val_samples_per_s"):
                    stats[key] = spread([r[key] for r in ok])
                stats["val_s"] = spread([r["val_s"] for r in ok])
            entry["approaches"][a] = stats
        lean = entry["approaches"].get("lean", {})
        for a, stats in entry["approaches"].items():
            if "median" in lean and "median" in stats:
                stats["ratio_to_lean"] = stats["median"] / lean["median"]
                # the fastest trial of each: the least disturbed by other work on the machine
                stats["best_ratio_to_lean"] = stats["max"] / lean["max"]
        steps = {s for stats in entry["approaches"].values() for s in stats.get("steps", [])}
        entry["same_steps"] = len(steps) == 1
        entry["steps"] = sorted(steps)
        entry["weights"] = compare_weights(rows)
        out[w] = entry
    return out


def compare_weights(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """dltrain's final weights against the lean loop's of the same repetition."""
    pairs = []
    for rep in sorted({t["rep"] for t in rows}):
        by = {t["approach"]: t.get("result") for t in rows if t["rep"] == rep}
        if by.get("dltrain") and by.get("lean"):
            pairs.append(by["dltrain"]["weights"] == by["lean"]["weights"])
    if not pairs:
        return {"verdict": "not compared", "pairs": 0}
    same = sum(pairs)
    verdict = "identical" if same == len(pairs) else f"differ in {len(pairs) - same} of {len(pairs)}"
    details = [t["weights_detail"] for t in rows
               if t["approach"] == "dltrain" and t.get("weights_detail", "identical") != "identical"]
    if details:
        verdict += f" ({details[0]})"
    return {"verdict": verdict, "identical": same, "pairs": len(pairs), "details": details}


def summarize_startup(records: Dict[str, List[Dict[str, float]]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, runs in records.items():
        good = [r for r in runs if r["rc"] == (2 if name == "config_error" else 0)]
        if not good:
            out[name] = {"error": f"every run failed (exit status {runs[0]['rc']})"}
            continue
        out[name] = {"wall_s": spread([r["wall_s"] for r in good]),
                     "max_rss_mib": spread([r["max_rss_mib"] for r in good])}
        if name == "first_step":
            out[name]["first_step_s"] = spread([r["first_step_s"] for r in good])
    return out


def targets(speed: Dict[str, Any], startup: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each target of the issue: the figure, the limit, met or not and the margin."""
    found: List[Dict[str, Any]] = []

    def add(name: str, value: Optional[float], limit: float, higher_is_better: bool,
            unit: str = "") -> None:
        if value is None:
            found.append({"target": name, "verdict": "not measured"})
            return
        met = value >= limit if higher_is_better else value <= limit
        found.append({"target": name, "value": value, "limit": limit, "met": met,
                      "margin": value - limit, "unit": unit,
                      "verdict": ("met" if met else "missed") + f" by {abs(value - limit):.3g}{unit}"})

    for w, entry in speed.items():
        a = entry["approaches"]
        add(f"{w}: dltrain / lean >= {SPEED_RATIO}", a.get("dltrain", {}).get("ratio_to_lean"),
            SPEED_RATIO, True)
        if a.get("dltrain", {}).get("fit_s") and a.get("dltrain_nodiag", {}).get("fit_s"):
            overhead = a["dltrain"]["fit_s"]["median"] / a["dltrain_nodiag"]["fit_s"]["median"] - 1
            add(f"{w}: diagnostics overhead <= {DIAGNOSTICS_OVERHEAD:.0%}", overhead,
                DIAGNOSTICS_OVERHEAD, False)
        if "median" in a.get("lightning", {}) and "median" in a.get("dltrain", {}):
            add(f"{w}: dltrain / Lightning > 1", a["dltrain"]["median"] / a["lightning"]["median"],
                1.0, True)

    if not startup:
        return found

    def wall(name: str) -> Optional[float]:
        return startup.get(name, {}).get("wall_s", {}).get("median")

    torch_s = wall("import_torch")
    for name in ("help", "config_error"):
        ratio = wall(name) / torch_s if wall(name) and torch_s else None
        add(f"`dltrain {'--help' if name == 'help' else 'optim.lr=-1'}` / import torch <= "
            f"{FAST_COMMAND}", ratio, FAST_COMMAND, False)
    first = startup.get("first_step", {}).get("first_step_s", {}).get("median")
    floor = wall("floor")
    add(f"first step <= floor + {FIRST_STEP_SLACK_S} s", first,
        floor + FIRST_STEP_SLACK_S if floor else float("nan"), False, " s")
    run_rss = startup.get("default_run", {}).get("max_rss_mib", {}).get("median")
    lean_rss = startup.get("lean_memory", {}).get("max_rss_mib", {}).get("median")
    add(f"peak RSS, default run / lean loop <= {MEMORY_RATIO}",
        run_rss / lean_rss if run_rss and lean_rss else None, MEMORY_RATIO, False)
    return found


def k(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def speed_table(speed: Dict[str, Any], approaches: List[str], titles: Dict[str, str]) -> str:
    head = ["workload", "steps", *(APPROACH_TITLES[a] for a in approaches)]
    if "dltrain" in approaches and "lean" in approaches:
        head += ["dltrain / lean", "best / best", "dltrain weights vs lean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, entry in speed.items():
        cells = [titles.get(w, w), "/".join(map(str, entry["steps"]))
                 + ("" if entry["same_steps"] else " (differ!)")]
        for a in approaches:
            s = entry["approaches"][a]
            if "median" not in s:
                cells.append(s["error"])
                continue
            ratio = f", {s['ratio_to_lean']:.2f}x" if "ratio_to_lean" in s and a != "lean" else ""
            cells.append(f"**{k(s['median'])}** ({k(s['min'])}–{k(s['max'])}{ratio})")
        if "dltrain" in approaches and "lean" in approaches:
            d = entry["approaches"]["dltrain"]
            cells += [f"**{d['ratio_to_lean']:.2f}**" if "ratio_to_lean" in d else "-",
                      f"{d['best_ratio_to_lean']:.2f}" if "best_ratio_to_lean" in d else "-",
                      entry["weights"]["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(speed: Dict[str, Any], approaches: List[str], titles: Dict[str, str]) -> str:
    head = ["workload", *(APPROACH_TITLES[a] for a in approaches)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, entry in speed.items():
        cells = [titles.get(w, w)]
        for a in approaches:
            c = entry["approaches"][a].get("cpu_share")
            cells.append(f"{c['median']:.2f} ({c['min']:.2f}–{c['max']:.2f})" if c else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dltrain_table(speed: Dict[str, Any], titles: Dict[str, str]) -> str:
    lines = ["| workload | timed by the bench | dltrain's own epoch_time_s | incl. epoch-end hooks "
             "(fit - validation) | validation passes (s) |", "|---|---|---|---|---|"]
    for w, entry in speed.items():
        s = entry["approaches"].get("dltrain", {})
        if "median" not in s:
            continue
        lines.append(f"| {titles.get(w, w)} | {k(s['median'])} | "
                     f"{k(s['self_timed_samples_per_s']['median'])} | "
                     f"{k(s['fit_less_val_samples_per_s']['median'])} | "
                     f"{s['val_s']['median']:.3f} |")
    return "\n".join(lines)


STARTUP_TITLES = {
    "import_torch": '`python -c "import torch"`',
    "floor": "floor: `import torch; torch.optim.Adam(...)`",
    "help": "`dltrain --help`",
    "config_error": "`dltrain optim.lr=-1` (config error)",
    "first_step": "`dltrain trainer.epochs=1`: process start → first step",
    "default_run": "`dltrain` (default run, 30 epochs), whole",
    "lean_memory": "lean loop, default run's data and model, whole",
}


def startup_table(startup: Dict[str, Any]) -> str:
    torch_s = startup.get("import_torch", {}).get("wall_s", {}).get("median")
    lines = ["| command | median s | min–max s | / import torch | peak RSS MiB |",
             "|---|---|---|---|---|"]
    for name, s in startup.items():
        if "error" in s:
            lines.append(f"| {STARTUP_TITLES[name]} | {s['error']} | | | |")
            continue
        t = s["first_step_s"] if name == "first_step" else s["wall_s"]
        ratio = f"{t['median'] / torch_s:.2f}" if torch_s else "-"
        lines.append(f"| {STARTUP_TITLES[name]} | {t['median']:.2f} | {t['min']:.2f}–"
                     f"{t['max']:.2f} | {ratio} | {s['max_rss_mib']['median']:.0f} |")
    return "\n".join(lines)


def targets_list(found: List[Dict[str, Any]]) -> str:
    lines = []
    for t in found:
        if "value" in t:
            lines.append(f"- {t['target']}: {t['value']:.3g}{t['unit']} against "
                         f"{t['limit']:.3g}{t['unit']}: **{t['verdict']}**")
        else:
            lines.append(f"- {t['target']}: {t['verdict']}")
    return "\n".join(lines)


def machine() -> Dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "dltrain_commit": commit(),
            "python": platform.python_version(), "torch": version("torch"),
            "lightning": version("lightning"), "dltrain": version("dltrain"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def commit() -> str:
    """The checkout's commit, and whether dltrain/ differs from it (read-only git calls)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dltrain", "configs"],
                               cwd=root, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes in dltrain/ or configs/" if dirty.strip() else "")


def diagnostics_table(speed: Dict[str, Any], titles: Dict[str, str]) -> str:
    """trainer.diagnostics' cost: dltrain with it on (the dltrain column) against off."""
    lines = ["| workload | samples/s on | samples/s off | train-pass overhead | "
             "fit() on | fit() off | whole-fit overhead |", "|---|---|---|---|---|---|---|"]
    for w, entry in speed.items():
        on, off = entry["approaches"].get("dltrain", {}), entry["approaches"].get("dltrain_nodiag", {})
        if "median" not in on or "median" not in off:
            continue
        fit_on, fit_off = on["fit_s"]["median"], off["fit_s"]["median"]
        lines.append(f"| {titles.get(w, w)} | {k(on['median'])} | {k(off['median'])} | "
                     f"{off['median'] / on['median'] - 1:+.1%} | {fit_on:.2f} s | {fit_off:.2f} s | "
                     f"{fit_on / fit_off - 1:+.1%} |")
    return "\n".join(lines)
