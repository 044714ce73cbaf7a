"""Everything done to a run from its folder alone: replay it, resume it, check what changed.

The saved config is Hydra's own record, ``RUN/.hydra/config.yaml``; it goes through the same
schema as any config, so a tampered file can set values but never name code to run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain import runs, schema
from dltrain.errors import UserError

SAVED_CONFIG = runs.SAVED_CONFIG

# values that may differ on resume without changing the maths of the run
# (trainer.epochs only extends it, unless a schedule's length depends on it)
FREE_ON_RESUME = {
    "trainer.epochs", "trainer.progress", "trainer.log_every", "trainer.device",
    "trainer.eval_batch_size", "trainer.early_stopping.patience", "trainer.threads",
    # the thread count and torch.compile compute the same model: they may split a sum
    # differently (batch norm's statistics, a convolution's weight gradient), which changes the
    # last bits, not the maths;
    # trainer.precision is not free: it changes the numbers the run computes
    "trainer.compile", "trainer.compile_mode",
    # the batch is global, so the number of processes leaves the maths as it is
    "trainer.strategy", "trainer.resume",
    # diagnostics read the gradients and weights, and draw no random number
    "trainer.diagnostics",
}
# the values that set how many optimizer steps an epoch has
STEP_COUNT_KEYS = ("trainer.batch_size", "trainer.accumulate", "trainer.limit_batches",
                   "trainer.overfit_batches")
FREE_PREFIXES = ("logger.",)  # loggers record the run; they never change it
EPOCH_BOUND_SCHEDULES = ("cosine", "onecycle")

# changes that --allow-changes still refuses: they could not take effect from the resume on
REFUSED_ON_RESUME = {
    "model.": "the saved weights belong to the old architecture",
    "regularization.batch_norm": "it adds or removes layers that the saved weights lack or have",
    "trainer.seed": "every generator continues from the checkpoint, so a new seed would change nothing",
    "trainer.monitor": "best.pt and early stopping were chosen by the old metric",
    "trainer.mode": "best.pt and early stopping were chosen by the old metric",
}
PATH_KEYS = ("data.path", "data.root")  # a moved data set: the fingerprint says if it is the same


def refusal(change: "Change", new: schema.TrainConfig, mid_epoch: bool) -> Optional[str]:
    """Why a resume cannot apply ``change``, or None when it can."""
    key = change["key"]
    if key == "regularization.dropout" and (change["from"] == 0) != (change["to"] == 0):
        return "it adds or removes dropout layers, which moves the saved weights' names"
    for prefix, reason in REFUSED_ON_RESUME.items():
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return reason
    if key.startswith("data.") and key not in PATH_KEYS:
        return "the run was trained and split on the old data"
    if key in STEP_COUNT_KEYS:
        counted = [what for what, yes in (
            (f"{new.sched.name}'s length", new.sched.name in ("onecycle", "cosine")),
            ("sched.warmup_epochs", bool(new.sched.warmup_epochs))) if yes]
        if mid_epoch:
            return "the interrupted epoch's batches and steps were counted with the old value"
        if counted:
            return f"{' and '.join(counted)} was counted in optimizer steps of the old epoch"
    return None


def run_folder(path: str) -> Path:
    root = Path(path)
    if not root.exists():
        raise UserError(f"no such folder: {root}")
    jobs = sorted(p.name for p in root.iterdir() if (p / SAVED_CONFIG).is_file()) if root.is_dir() else []
    if jobs and not (root / SAVED_CONFIG).is_file():
        raise UserError(f"{root} is a sweep folder; name one of its jobs: "
                        + ", ".join(str(root / j) for j in jobs[:5]) + (" ..." if len(jobs) > 5 else ""))
    if not (root / SAVED_CONFIG).is_file():
        raise UserError(f"{root} is not a dltrain run folder: no {SAVED_CONFIG} in it")
    return root


def saved_config(root: Path) -> Dict[str, Any]:
    import yaml

    path = root / SAVED_CONFIG
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except yaml.YAMLError as e:  # read with yaml's safe loader: a tag never constructs anything
        raise UserError(runs.yaml_problem(path, e)) from None
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{root / SAVED_CONFIG} does not hold a config mapping")
    return raw


def apply_overrides(raw: Dict[str, Any], overrides: List[str]) -> schema.TrainConfig:
    """``key=value`` overrides on a saved config; group switches (``optim=sgd``) are refused:
    they start a different experiment, not the same one again."""
    for item in overrides:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise UserError(f"override {item!r} is not of the form key=value")
        if key in schema.GROUPS:
            raise UserError(
                f"override {item!r} switches the {key} group of a saved run; set its values "
                f"instead ({key}.KEY=VALUE), or start a new run: dltrain {item} ..."
            )
    try:
        merged = OmegaConf.merge(OmegaConf.create(raw), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as e:
        raise UserError(f"bad override: {e}") from None
    return schema.load_config(merged)


Change = Dict[str, Any]  # {"key": dotted key, "from": old value, "to": new value}


def differences(old: schema.TrainConfig, new: schema.TrainConfig) -> List[Change]:
    a, b = schema.flatten(schema.to_dict(old)), schema.flatten(schema.to_dict(new))
    return [{"key": k, "from": a.get(k), "to": b.get(k)}
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe(change: Change) -> str:
    return f"{change['key']}: {change['from']!r} → {change['to']!r}"


def math_changes(old: schema.TrainConfig, new: schema.TrainConfig) -> List[Change]:
    """The differences that would make a resumed run differ from an uninterrupted one."""
    out = []
    for change in differences(old, new):
        free = change["key"] in FREE_ON_RESUME or change["key"].startswith(FREE_PREFIXES)
        if change["key"] == "trainer.epochs" and new.sched.name in EPOCH_BOUND_SCHEDULES:
            free = False  # the schedule's length was fixed by the old epoch count
        if not free:
            out.append(change)
    return out


@dataclasses.dataclass
class ResumePlan:
    root: Path
    config: schema.TrainConfig
    event: Dict[str, Any]  # what run.yaml records about this resume (accepted changes)


def prepare_resume(path: str, overrides: List[str], allow_changes: bool,
                   allow_data_change: bool = False) -> ResumePlan:
    """Check a resume before anything in the folder is touched.

    The overrides apply to the config the run last trained with (last.pt's, which holds the
    changes of earlier resumes); the saved .hydra/config.yaml stays the run's original config.
    """
    root = run_folder(path)
    last = root / runs.CHECKPOINTS / runs.LAST
    if not last.is_file():
        raise UserError(f"{root} has no {runs.CHECKPOINTS}/{runs.LAST} to resume from "
                        "(it stopped before its first epoch ended): start it again instead")
    ckpt = _checkpoint(last)
    current = ckpt.get("config") or saved_config(root)
    old = schema.load_config(current)
    new = apply_overrides(current, overrides)
    changes = math_changes(old, new)
    if changes and not allow_changes:
        raise UserError(
            "resuming with a config that changes the maths of the run:\n  "
            + "\n  ".join(map(describe, changes))
            + "\nresume with --allow-changes to accept (they are recorded in run.yaml), "
              f"or replay it as a new run: dltrain replay {root} {' '.join(overrides)}"
        )
    refused = [f"{describe(c)}: {reason}" for c in changes
               if (reason := refusal(c, new, mid_epoch=bool(ckpt.get("batch"))))]
    if refused:
        raise UserError("a resume cannot apply these changes:\n  " + "\n  ".join(refused)
                        + f"\nreplay it as a new run instead: dltrain replay {root} "
                        + " ".join(overrides))
    if new.trainer.strategy == "ddp" and not any(o.startswith("trainer.strategy=") for o in overrides):
        from dltrain import distributed

        if distributed.detect() is None:  # a DDP run continued in one process, as it may be
            new.trainer.strategy = "auto"
    done = ckpt["epoch"]
    if done >= new.trainer.epochs:
        raise UserError(f"{root} already finished {done} epochs; to train on, extend it: "
                        f"dltrain resume {root} trainer.epochs=N (N > {done})")
    event: Dict[str, Any] = {"changes": changes} if changes else {}
    data_changes = check_data(root, new, allow_data_change)
    if data_changes:
        event["data_changes_allowed"] = data_changes
    return ResumePlan(root, new, event)


def check_data(root: Path, config: schema.TrainConfig, allow: bool) -> List[str]:
    """Compare the data ``config`` selects now with the fingerprint in run.yaml; stop with one
    line naming what changed unless ``allow`` (then the differences are returned, to record)."""
    from dltrain.fingerprint import compare, fingerprint

    recorded = runs.read_record(root).get("data")
    if not recorded:
        return []  # a run folder from before fingerprints: nothing to compare with
    changed = compare(recorded, fingerprint(config.data))
    if changed and not allow:
        raise UserError(f"the data of {root} changed since it trained: {changed[0]}"
                        + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
                        + "; pass --allow-data-change to go on with the data as it is now")
    return changed


def recorded_changes(root: Path) -> List[str]:
    """The changes earlier resumes accepted, one line each with the epoch they began at."""
    return [f"{describe(c)} (from epoch {resume.get('from_epoch', 0) + 1})"
            for resume in runs.read_record(root).get("resumes") or []
            for c in resume.get("changes") or [] if isinstance(c, dict)]


def _checkpoint(last: Path) -> Dict[str, Any]:
    from dltrain.checkpoint import load_checkpoint

    ckpt = load_checkpoint(last)
    if not isinstance(ckpt.get("epoch"), int):
        raise UserError(f"{last} is not a dltrain checkpoint (no epoch in it)")
    return ckpt
