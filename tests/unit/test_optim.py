"""Optimizers get the configured settings; every schedule moves the learning rate exactly as
torch's own scheduler does when stepped at the interval the trainer uses."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

from dltrain.optim import SCHEDULES, build_optimizer, build_schedule


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


# ---------------------------------------------------------------------------------------------
# optimizers
@pytest.mark.parametrize(
    "node, cls, expected",
    [
        ({"name": "sgd", "lr": 0.02, "momentum": 0.5, "nesterov": True}, torch.optim.SGD,
         {"lr": 0.02, "momentum": 0.5, "nesterov": True}),
        ({"name": "adam", "lr": 0.003, "betas": [0.8, 0.9], "eps": 1e-6}, torch.optim.Adam,
         {"lr": 0.003, "betas": (0.8, 0.9), "eps": 1e-6}),
        ({"name": "adamw", "lr": 0.004, "betas": [0.7, 0.95]}, torch.optim.AdamW,
         {"lr": 0.004, "betas": (0.7, 0.95)}),
        ({"name": "rmsprop", "lr": 0.005, "alpha": 0.9, "momentum": 0.3}, torch.optim.RMSprop,
         {"lr": 0.005, "alpha": 0.9, "momentum": 0.3}),
    ],
)
def test_optimizer_settings_reach_torch(make_config, node, cls, expected):
    config = make_config(optim=node)
    optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
    assert type(optimizer) is cls
    for group in optimizer.param_groups:
        for key, value in expected.items():
            assert group[key] == value, key
        # AdamW's own default decay (0.01) must not leak in: decay is regularization's job
        assert group["weight_decay"] == 0.0


def test_optimizer_steps_with_the_configured_lr(make_config):
    """One plain SGD step moves every parameter by -lr · grad."""
    config = make_config(optim={"name": "sgd", "lr": 0.3, "momentum": 0.0})
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(config.optim, model, weight_decay=0.0)
    model(torch.ones(2, 3)).square().sum().backward()
    optimizer.step()
    for b, p in zip(before, model.parameters()):
        assert torch.allclose(p, b - 0.3 * p.grad)


# ---------------------------------------------------------------------------------------------
# schedules
EPOCHS, STEPS = 6, 3


def lrs_through_dltrain(schedule, optimizer, metrics):
    """The learning rate before every optimizer step, stepping as ``fit`` does."""
    seen = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.after_step()
        schedule.after_epoch(metrics[epoch])
    return seen


def lrs_through_torch(make_scheduler, interval, metrics, lr):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = make_scheduler(optimizer)
    seen = []
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if interval == "step":
                scheduler.step()
        if interval == "epoch":
            scheduler.step()
        elif interval == "metric":
            scheduler.step(metrics[epoch])
    return seen


METRICS = [1.0, 0.8, 0.8, 0.8, 0.8, 0.8]
SCHEDULE_CASES = {
    "none": ({}, None, None),
    "step": ({"step_size": 2, "gamma": 0.5},
             lambda opt: lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), "epoch"),
    "cosine": ({"eta_min": 0.01},
               lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * STEPS, eta_min=0.01),
               "step"),
    "plateau": ({"factor": 0.5, "patience": 1, "min_lr": 0.02},
                lambda opt: lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1,
                                                           min_lr=0.02), "metric"),
    "onecycle": ({"pct_start": 0.25},
                 lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=EPOCHS,
                                                     steps_per_epoch=STEPS, pct_start=0.25), "step"),
}


def test_every_registered_schedule_is_tested():
    assert sorted(SCHEDULE_CASES) == SCHEDULES.names()


@pytest.mark.parametrize("name", sorted(SCHEDULE_CASES))
def test_schedule_follows_torch(make_config, name):
    settings, reference, interval = SCHEDULE_CASES[name]
    config = make_config(optim={"name": "sgd", "lr": 0.1, "momentum": 0.0},
                         sched={"name": name, **settings}, trainer={"epochs": EPOCHS})
    optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
    schedule = build_schedule(config.sched, optimizer, epochs=config.trainer.epochs,
                              steps_per_epoch=STEPS, base_lr=config.optim.lr, mode="min")

    got = lrs_through_dltrain(schedule, optimizer, METRICS)

    assert len(got) == EPOCHS * STEPS
    if reference is None:
        assert got == [0.1] * (EPOCHS * STEPS)
        return
    assert schedule.interval == interval
    want = lrs_through_torch(reference, interval, METRICS, lr=0.1)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert len(set(got)) > 1, "the learning rate never changed"


def test_step_and_cosine_by_hand(make_config):
    """The same curves from their formulas, without torch's schedulers: step by epoch, the
    cosine by optimizer step."""
    lr, total = 0.1, EPOCHS * STEPS
    for name, settings, formula in (
        ("step", {"step_size": 2, "gamma": 0.5}, lambda k: lr * 0.5 ** (k // STEPS // 2)),
        ("cosine", {"eta_min": 0.01},
         lambda k: 0.01 + (lr - 0.01) * (1 + math.cos(math.pi * k / total)) / 2),
    ):
        config = make_config(sched={"name": name, **settings}, trainer={"epochs": EPOCHS})
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        schedule = build_schedule(config.sched, optimizer, epochs=EPOCHS, steps_per_epoch=STEPS,
                                  base_lr=lr, mode="min")
        got = lrs_through_dltrain(schedule, optimizer, METRICS)
        assert got == pytest.approx([formula(k) for k in range(total)], rel=1e-9), name


@pytest.mark.parametrize("name", sorted(SCHEDULE_CASES))
@pytest.mark.parametrize("warmup", [{"warmup_steps": 5, "warmup_start_factor": 0.2},
                                    {"warmup_epochs": 2}])
def test_warmup_multiplies_every_schedule(make_config, name, warmup):
    """lr before optimizer step k = (start + (1 - start) * k / W) x the schedule's own lr for
    k < W, the schedule's own lr from W on (W in optimizer steps)."""
    settings = SCHEDULE_CASES[name][0]
    optimizer_args = {"name": "sgd", "lr": 0.1, "momentum": 0.0}
    plain = make_config(optim=optimizer_args, sched={"name": name, **settings},
                        trainer={"epochs": EPOCHS})
    warmed = make_config(optim=optimizer_args, sched={"name": name, **settings, **warmup},
                         trainer={"epochs": EPOCHS})
    got = {}
    for key, config in (("plain", plain), ("warmed", warmed)):
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        schedule = build_schedule(config.sched, optimizer, epochs=EPOCHS, steps_per_epoch=STEPS,
                                  base_lr=0.1, mode="min")
        got[key] = lrs_through_dltrain(schedule, optimizer, METRICS)
    steps = warmup.get("warmup_steps") or warmup["warmup_epochs"] * STEPS
    start = warmup.get("warmup_start_factor", 0.0)
    factors = [start + (1 - start) * k / steps if k < steps else 1.0 for k in range(EPOCHS * STEPS)]
    assert got["warmed"] == pytest.approx([f * lr for f, lr in zip(factors, got["plain"])],
                                          rel=1e-12, abs=1e-15)
    assert got["warmed"][0] == pytest.approx(start * got["plain"][0])
    assert got["warmed"][steps:] == got["plain"][steps:]


def test_warmup_state_round_trips_mid_warmup(make_config):
    """A schedule restored inside its warmup goes on with the same lrs."""
    config = make_config(optim={"name": "sgd", "lr": 0.1, "momentum": 0.0},
                         sched={"name": "cosine", "warmup_steps": 7}, trainer={"epochs": EPOCHS})

    def build():
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        return optimizer, build_schedule(config.sched, optimizer, epochs=EPOCHS,
                                         steps_per_epoch=STEPS, base_lr=0.1, mode="min")

    optimizer, schedule = build()
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()
    optimizer2, schedule2 = build()
    optimizer3, schedule3 = build()
    for _ in range(4):
        optimizer2.step()
        schedule2.after_step()
    optimizer3.load_state_dict(optimizer2.state_dict())
    schedule3.load_state_dict(schedule2.state_dict())
    resumed = []
    for _ in range(8):
        resumed.append(optimizer3.param_groups[0]["lr"])
        optimizer3.step()
        schedule3.after_step()
    assert resumed == lrs[4:]


def test_onecycle_peaks_at_max_lr(make_config):
    for max_lr, peak in ((None, 0.1), (0.4, 0.4)):
        config = make_config(sched={"name": "onecycle", "max_lr": max_lr, "pct_start": 0.5},
                             trainer={"epochs": EPOCHS})
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        schedule = build_schedule(config.sched, optimizer, epochs=EPOCHS, steps_per_epoch=STEPS,
                                  base_lr=0.1, mode="min")
        got = lrs_through_dltrain(schedule, optimizer, METRICS)
        assert max(got) == pytest.approx(peak)
        assert got[0] < peak and got[-1] < got[0]


def test_plateau_watches_the_given_mode(make_config):
    config = make_config(sched={"name": "plateau", "factor": 0.5, "patience": 0})
    optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
    schedule = build_schedule(config.sched, optimizer, epochs=3, steps_per_epoch=1, base_lr=0.1,
                              mode="max")
    assert schedule.scheduler.mode == "max"
    schedule.after_epoch(0.5)
    schedule.after_epoch(0.9)  # rising is an improvement in max mode
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    schedule.after_epoch(0.8)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["step", "cosine", "plateau", "onecycle"])
def test_schedule_state_round_trips(make_config, name):
    """A schedule loaded from its state dict continues exactly where the original was."""
    settings = SCHEDULE_CASES[name][0]
    config = make_config(sched={"name": name, **settings}, trainer={"epochs": EPOCHS})

    def fresh():
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        return optimizer, build_schedule(config.sched, optimizer, epochs=EPOCHS,
                                         steps_per_epoch=STEPS, base_lr=config.optim.lr, mode="min")

    opt_a, sched_a = fresh()
    for epoch in range(3):
        for _ in range(STEPS):
            opt_a.step()
            sched_a.after_step()
        sched_a.after_epoch(METRICS[epoch])
    opt_b, sched_b = fresh()
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sched_a.state_dict())
    for epoch in range(3, EPOCHS):
        for opt, sched in ((opt_a, sched_a), (opt_b, sched_b)):
            for _ in range(STEPS):
                opt.step()
                sched.after_step()
            sched.after_epoch(METRICS[epoch])
        assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]


def test_unknown_schedule_is_a_user_error(make_config):
    from dltrain.errors import UserError
    from dltrain.schema import SchedConfig

    optimizer = build_optimizer(make_config().optim, tiny_model(), weight_decay=0.0)
    with pytest.raises(UserError, match="cosine"):
        build_schedule(SchedConfig(name="cosin"), optimizer, epochs=1, steps_per_epoch=1,
                       base_lr=0.1, mode="min")


# ---------------------------------------------------------------------------------------------
# issue 7: the maths means what it says
@pytest.mark.parametrize("name, want", [("adamw", 0.01), ("adam", 0.0), ("sgd", 0.0),
                                        ("rmsprop", 0.0)])
def test_unset_weight_decay_is_the_optimizers_own_default(make_config, name, want):
    """Issue 7 item 2: without regularization.weight_decay each optimizer keeps its torch default
    (AdamW decays by 0.01, so it is not Adam), still never on biases and norm parameters."""
    config = make_config(optim={"name": name}, regularization={"batch_norm": True})
    assert config.regularization.weight_decay is None
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = build_optimizer(config.optim, model, config.regularization.weight_decay)
    decay = {g["name"]: g["weight_decay"] for g in optimizer.param_groups}
    assert decay == {"decay": want, "no_decay": 0.0}


def test_explicit_weight_decay_wins_over_the_default(make_config):
    config = make_config(optim={"name": "adamw"}, regularization={"weight_decay": 0.0})
    optimizer = build_optimizer(config.optim, tiny_model(), config.regularization.weight_decay)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]


@pytest.mark.parametrize("optim, keys", [
    ({"name": "sgd", "momentum": 0.0}, ("momentum",)),
    ({"name": "sgd", "momentum": 0.5}, ("momentum",)),
    ({"name": "rmsprop"}, ("momentum",)),
    ({"name": "adam", "betas": [0.8, 0.99]}, ("betas",)),
])
def test_onecycle_leaves_momentum_and_betas_alone_by_default(make_config, optim, keys):
    """Issue 7 item 3: torch's OneCycleLR cycles momentum (beta1) unless told not to; dltrain
    does so only with sched.cycle_momentum=true."""
    for cycle in (False, True):
        config = make_config(optim=optim, sched={"name": "onecycle", "cycle_momentum": cycle},
                             trainer={"epochs": EPOCHS})
        optimizer = build_optimizer(config.optim, tiny_model(), weight_decay=0.0)
        before = [{k: g[k] for k in keys} for g in optimizer.param_groups]
        schedule = build_schedule(config.sched, optimizer, epochs=EPOCHS, steps_per_epoch=STEPS,
                                  base_lr=0.1, mode="min")
        seen = []
        for _ in range(EPOCHS * STEPS):
            optimizer.step()
            schedule.after_step()
            seen.append([{k: g[k] for k in keys} for g in optimizer.param_groups])
        if cycle:
            assert any(s != before for s in seen), "cycle_momentum=true should cycle"
        else:
            assert all(s == before for s in seen)


def test_onecycle_ends_its_anneal_when_a_singleton_batch_is_dropped(make_config):
    """Issue 7 item 4: with batch norm a last batch of one sample is not trained on; the per-step
    schedule counts the steps really taken, so the lr ends at onecycle's final value."""
    from dltrain.train.loop import Callback, fit
    from dltrain.train.run import build_job

    probe = build_job(make_config())
    n = len(probe.data.train)
    batch_size = next(b for b in range(64, n) if n % b == 1)
    config = make_config(optim={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                         sched={"name": "onecycle"}, regularization={"batch_norm": True},
                         trainer={"epochs": 2, "batch_size": batch_size})
    job = build_job(config)

    class LastStepLR(Callback):  # on_step runs after the step and its schedule step
        used = [0.1]

        def on_step(self, job, batch, running):
            self.used.append(job.optimizer.param_groups[0]["lr"])

    recorder = LastStepLR()
    state = fit(job, [recorder])
    sched = job.schedule.scheduler
    assert state.step == sched.total_steps == 2 * (n // batch_size)
    final = 0.1 / 25.0 / 1e4  # max_lr / div_factor / final_div_factor (torch defaults)
    assert recorder.used[-2] == pytest.approx(final, rel=1e-9)  # the lr of the last step taken
