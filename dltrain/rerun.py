"""Everything done to a run from its folder alone: replay it, resume it, check what changed.

The saved config is Hydra's own record, ``RUN/.hydra/config.yaml``; it goes through the same
schema as any config, so a tampered file can set values but never name code to run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Tuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dltrain import runs, schema
from dltrain.errors import UserError

SAVED_CONFIG = Path(".hydra") / "config.yaml"

# values that may differ on resume without changing the maths of the run
# (trainer.epochs only extends it, unless a schedule's length depends on it)
FREE_ON_RESUME = {
    "trainer.epochs", "trainer.progress", "trainer.log_every", "trainer.device",
    "trainer.eval_batch_size", "trainer.early_stopping.patience", "logger.name",
}
EPOCH_BOUND_SCHEDULES = ("cosine", "onecycle")


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
    try:
        raw = OmegaConf.to_container(OmegaConf.load(root / SAVED_CONFIG), resolve=True)
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise UserError(f"cannot read {root / SAVED_CONFIG}: {e}") from None
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


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict):
        out: Dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def differences(old: schema.TrainConfig, new: schema.TrainConfig) -> List[Tuple[str, Any, Any]]:
    a, b = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(new))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def math_changes(old: schema.TrainConfig, new: schema.TrainConfig) -> List[str]:
    """The differences that would make a resumed run differ from an uninterrupted one."""
    out = []
    for key, before, after in differences(old, new):
        free = key in FREE_ON_RESUME
        if key == "trainer.epochs" and new.sched.name in EPOCH_BOUND_SCHEDULES:
            free = False  # the schedule's length was fixed by the old epoch count
        if not free:
            out.append(f"{key}: {before!r} → {after!r}")
    return out


def prepare_resume(path: str, overrides: List[str], allow_changes: bool) -> Tuple[Path, schema.TrainConfig, List[str]]:
    root = run_folder(path)
    last = root / runs.CHECKPOINTS / runs.LAST
    if not last.is_file():
        raise UserError(f"{root} has no {runs.CHECKPOINTS}/{runs.LAST} to resume from "
                        "(it stopped before its first epoch ended): start it again instead")
    raw = saved_config(root)
    old = schema.load_config(raw)
    new = apply_overrides(raw, overrides)
    changes = math_changes(old, new)
    if changes and not allow_changes:
        raise UserError(
            "resuming with a config that changes the maths of the run:\n  "
            + "\n  ".join(changes)
            + "\nresume with --allow-changes to accept (they are recorded in run.yaml), "
              f"or replay it as a new run: dltrain replay {root} {' '.join(overrides)}"
        )
    if new.sched.name == "onecycle" and new.trainer.epochs != old.trainer.epochs:
        raise UserError("a onecycle schedule cannot be extended: its length is fixed by "
                        "trainer.epochs when the run started; replay with more epochs instead")
    done = _epochs_done(last)
    if done >= new.trainer.epochs:
        raise UserError(f"{root} already finished {done} epochs; to train on, extend it: "
                        f"dltrain resume {root} trainer.epochs=N (N > {done})")
    return root, new, changes


def _epochs_done(last: Path) -> int:
    from dltrain.checkpoint import load_checkpoint

    epoch = load_checkpoint(last).get("epoch")
    if not isinstance(epoch, int):
        raise UserError(f"{last} is not a dltrain checkpoint (no epoch in it)")
    return epoch


def save_config(root: Path, config: schema.TrainConfig) -> None:
    """Keep .hydra/config.yaml the config the run now trains with (after an accepted change)."""
    from dltrain.atomic import atomic_write_text

    atomic_write_text(root / SAVED_CONFIG, OmegaConf.to_yaml(OmegaConf.create(schema.to_dict(config))))
