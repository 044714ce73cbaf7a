"""curves.png and sweep.png, read from the matplotlib figures before they are saved."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("matplotlib")

from dltrain.plots import (BEST_GID, DEFAULT_LABEL, curves_figure, plot_curves,  # noqa: E402
                           plot_sweep, sweep_figure, tick_label)


def history(epochs=8, lr=lambda epoch: 0.001):
    rows = []
    for e in range(1, epochs + 1):
        val = 1 / e + 0.1 * max(0, e - 5)  # best at epoch 5, then overfitting
        rows.append({"epoch": e, "train_loss": 1 / e, "val_loss": val, "train_acc": 1 - 1 / e,
                     "val_acc": 1 - val / 2, "lr": lr(e), "epoch_time_s": 0.1})
    return rows


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


def best_marks(ax):
    return [line for line in ax.lines if line.get_gid() == BEST_GID]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_curves_mark_the_best_epoch_in_every_panel_and_on_the_monitored_curve():
    fig = curves_figure(history(), "mlp on digits", best_epoch=5, monitor="val_loss")
    assert titles(fig) == ["loss", "accuracy"]
    for ax in fig.axes:
        marks = best_marks(ax)
        assert marks and all(list(m.get_xdata()) == [5, 5] or list(m.get_xdata()) == [5]
                             for m in marks)
        assert "best (epoch 5)" in [t.get_text() for t in ax.get_legend().get_texts()]
    loss, acc = fig.axes
    star = [m for m in best_marks(loss) if m.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_ydata()) == [pytest.approx(0.2)]
    assert not [m for m in best_marks(acc) if m.get_marker() == "*"]  # not the monitor
    assert "best epoch 5" in fig._suptitle.get_text()


def test_the_star_follows_the_monitor():
    fig = curves_figure(history(), "t", best_epoch=5, monitor="val_acc")
    loss, acc = fig.axes
    assert [m.get_marker() for m in best_marks(acc)].count("*") == 1
    assert "*" not in [m.get_marker() for m in best_marks(loss)]


def test_no_mark_without_a_best_epoch():
    fig = curves_figure(history(), "t")
    assert not any(best_marks(ax) for ax in fig.axes)


def test_the_lr_panel_shows_only_when_the_lr_changed():
    assert "learning rate" not in titles(curves_figure(history(), "t", 5, "val_loss"))
    stepped = curves_figure(history(lr=lambda e: 0.1 * 0.5 ** (e // 3)), "t", 5, "val_loss")
    assert titles(stepped) == ["loss", "accuracy", "learning rate"]
    assert best_marks(stepped.axes[-1])  # the best epoch is marked against the lr too


def test_plot_curves_writes_a_png(tmp_path):
    plot_curves(history(), tmp_path / "curves.png", "t", best_epoch=5, monitor="val_loss")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    plot_curves([], tmp_path / "none.png", "t")
    assert not (tmp_path / "none.png").exists()


# ---------------------------------------------------------------------------------------------
# sweep.png
def labels(fig, ax):
    fig.canvas.draw()
    lo, hi = sorted(ax.get_xlim())
    return [t.get_text() for t in ax.get_xticklabels()
            if t.get_text() and lo <= t.get_position()[0] <= hi]


def lrs(values, metric=lambda v: 0.2):
    return [{"optim.lr": v, "best_val_loss": metric(v)} for v in values]


def test_a_sweep_over_two_decades_gets_a_log_axis_with_short_distinct_labels():
    values = [1.2e-4, 3e-4, 8e-4, 9e-4, 1e-3, 1.1e-3, 2.5e-3, 7e-3, 9.5e-3]
    fig = sweep_figure(lrs(values), ["optim.lr"], "best_val_loss")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    shown = labels(fig, ax)
    assert "0.001" in shown and len(shown) >= 3
    assert len(set(shown)) == len(shown) and all(len(text) <= 6 for text in shown), shown
    # no labels on the minor ticks: they are what ran together (0.00080.00090.0010...)
    assert all(t.get_text() == "" for t in ax.xaxis.get_minorticklabels())


def test_a_sweep_over_one_decade_is_log_too_and_less_than_that_is_linear():
    decade = sweep_figure(lrs([1e-3, 1e-2]), ["optim.lr"], "best_val_loss")
    assert decade.axes[0].get_xscale() == "log"
    fig = sweep_figure(lrs([7.5e-4, 9.3e-4, 1.25e-3]), ["optim.lr"], "best_val_loss")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    shown = labels(fig, ax)
    assert 2 <= len(shown) <= 6 and all(len(text) <= 7 for text in shown), shown


def test_a_value_left_at_its_default_shows_as_its_value_or_as_default_never_none():
    rows = [{"regularization.weight_decay": v, "best_val_loss": 0.2} for v in (None, 1e-4, 1e-3)]
    fig = sweep_figure(rows, ["regularization.weight_decay"], "best_val_loss")
    shown = labels(fig, fig.axes[0])
    assert shown[0] == DEFAULT_LABEL and "None" not in shown
    known = sweep_figure(rows, ["regularization.weight_decay"], "best_val_loss",
                         defaults={"regularization.weight_decay": 0.01})
    ax = known.axes[0]
    xs = sorted(x for x, _ in ax.collections[0].get_offsets())
    assert xs == pytest.approx([1e-4, 1e-3, 1e-2]) and ax.get_xscale() == "log"


def test_categories_keep_their_order_and_failed_jobs_are_left_out(tmp_path):
    rows = [{"optim": "sgd", "best_val_loss": 0.3}, {"optim": "adam", "best_val_loss": 0.2},
            {"optim": "rmsprop", "best_val_loss": None}]
    fig = sweep_figure(rows, ["optim"], "best_val_loss")
    assert labels(fig, fig.axes[0]) == ["sgd", "adam"]
    plot_sweep(rows, ["optim"], "best_val_loss", tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("value, text", [(1e-4, "0.0001"), (5e-4, "0.0005"), (0.001, "0.001"),
                                         (2e-5, "2e-5"), (100.0, "100"), (1e6, "1e6")])
def test_tick_labels(value, text):
    assert tick_label(value) == text


def test_the_metric_gets_a_log_axis_over_three_decades():
    rows = [{"optim.lr": v, "best_val_loss": m} for v, m in [(0.1, 1e-4), (0.2, 1.0), (0.3, 10.0)]]
    ax = sweep_figure(rows, ["optim.lr"], "best_val_loss").axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    assert math.isclose(min(y for _, y in ax.collections[0].get_offsets()), 1e-4)
