"""Gradient flow and layer health (dltrain.diagnostics): the numbers against hand computations on
tiny models with fixed weights, the hidden-state gradients against nn.RNN/LSTM/GRU's own kernel,
what the probe must leave alone, the CSV across a resume, and gradflow.png for every family."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from unit_support import INPUT_SHAPES, TINY, data_info

from dltrain.diagnostics import (
    DIAGNOSTICS,
    QUANTITIES,
    Diagnostics,
    DiagnosticsWriter,
    gradflow_figure,
    layers_with_parameters,
    plot_gradflow,
    read_rows,
    wanted,
)
from dltrain.diagnostics.gradflow import (
    GRAD_TITLE,
    HEALTH_TITLE,
    HIDDEN_TITLE,
    UPDATE_TITLE,
)
from dltrain.models import build_model
from dltrain.models.rnn import RecurrentNet

KIND = {"mlp": "table", "cnn": "image", "rnn": "sequence", "lstm": "sequence", "gru": "image"}


def values(rows, quantity):
    """{layer: value} of ``quantity`` in ``rows``."""
    return {layer: v for _, layer, q, v in rows if q == quantity}


def build(make_config, name, task="classification", **model):
    kind = KIND[name]
    config = make_config(model={"name": name, **TINY[name], **model})
    return build_model(config, data_info(kind, task)), kind


def batch(kind, n=6, task="classification", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *INPUT_SHAPES[kind], generator=g)
    if task == "classification":
        return x, torch.randint(0, 4, (n,), generator=g)
    return x, torch.randn(n, 2, generator=g)


def train_steps(model, diag, x, y, criterion, steps=2, lr=0.1):
    """``steps`` SGD steps, each one recorded as the loop records a log step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        criterion(model(x), y).backward()
        diag.record_grads()
        diag.before_update()
        opt.step()
        diag.after_update()


# ---------------------------------------------------------------------------------------------
# layers
def test_layers_are_the_modules_with_own_parameters_in_model_order(make_config):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    assert [name for name, _ in layers_with_parameters(mlp)] == ["1", "2", "4"]
    lstm, _ = build(make_config, "lstm")
    assert [name for name, _ in layers_with_parameters(lstm)] == ["rnn", "head.0", "head.2"]
    assert [name for name, _ in layers_with_parameters(nn.Linear(2, 2))] == ["(model)"]


def test_auto_measures_models_of_at_most_ten_layers():
    def deep(n):
        return nn.Sequential(*[nn.Linear(2, 2) for _ in range(n)])

    assert wanted("auto", deep(10)) and not wanted("auto", deep(11))
    assert wanted(True, deep(11)) and not wanted(False, deep(1))
    assert wanted("true", deep(11)) and not wanted("False", deep(1))  # a str-typed option
    with pytest.raises(ValueError, match="auto, true or false"):
        wanted("sometimes", deep(1))


# ---------------------------------------------------------------------------------------------
# numbers against a hand computation
def fixed_mlp():
    """Linear(3, 4) → ReLU → Linear(4, 2): unit 0 sees x0, unit 1 sees x1, unit 2 sees nothing
    (its input is 0, never > 0), unit 3 sees x0 + x1 + x2 - 100."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 1]]))
        net[0].bias.copy_(torch.tensor([0.5, 0, 0, -100]))
        net[2].weight.copy_(torch.tensor([[1.0, -2, 0.5, 1], [0.5, 1, -1, 2]]))
        net[2].bias.copy_(torch.tensor([0.1, -0.2]))
    return net


def test_grad_and_weight_norms_and_update_ratio_match_a_hand_computation():
    net = fixed_mlp()
    w1, b1 = net[0].weight.detach().clone(), net[0].bias.detach().clone()
    w2, b2 = net[2].weight.detach().clone(), net[2].bias.detach().clone()
    x = torch.tensor([[1.0, 2, -1], [-0.5, 1, 3], [2, -1, 0.5]])
    y = torch.tensor([[0.0, 1], [1, 0], [0.5, 0.5]])
    diag = Diagnostics(net, x, y, nn.MSELoss())

    lr = 0.1
    train_steps(net, diag, x, y, nn.MSELoss(), steps=1, lr=lr)
    rows = diag.end_epoch(1)

    # backpropagation by hand: loss = mean over the 3·2 outputs of (out - y)²
    z1 = x @ w1.T + b1
    a1 = z1.clamp_min(0)
    out = a1 @ w2.T + b2
    d_out = 2 * (out - y) / out.numel()
    g_w2, g_b2 = d_out.T @ a1, d_out.sum(0)
    d_z1 = (d_out @ w2) * (z1 > 0)
    g_w1, g_b1 = d_z1.T @ x, d_z1.sum(0)

    def norm(*tensors):
        return math.sqrt(sum(float((t**2).sum()) for t in tensors))

    grad = {"0": norm(g_w1, g_b1), "2": norm(g_w2, g_b2)}
    old = {"0": norm(w1, b1), "2": norm(w2, b2)}
    new = {"0": norm(w1 - lr * g_w1, b1 - lr * g_b1), "2": norm(w2 - lr * g_w2, b2 - lr * g_b2)}
    assert values(rows, "grad_norm") == pytest.approx(grad, rel=1e-5)
    assert values(rows, "weight_norm") == pytest.approx(new, rel=1e-5)
    # plain SGD: ||Δw|| = lr·||g||
    assert values(rows, "update_ratio") == pytest.approx(
        {k: lr * grad[k] / old[k] for k in grad}, rel=1e-5)
    assert {(e, q) for e, _, q, _ in rows} <= {(1, q) for q in QUANTITIES}
    # rows in model order, quantities in QUANTITIES order
    order = list(QUANTITIES)
    keys = [(layer, order.index(q)) for _, layer, q, _ in rows]
    assert keys == sorted(keys)


def test_grad_norm_is_the_mean_over_recorded_steps_and_sums_restart_each_epoch():
    net = fixed_mlp()
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    diag = Diagnostics(net, x, y, nn.MSELoss())
    norms = []
    for scale in (1.0, 3.0):
        net.zero_grad()
        (scale * nn.functional.mse_loss(net(x), y)).backward()
        norms.append(math.sqrt(sum(float((p.grad**2).sum()) for p in net[0].parameters())))
        diag.record_grads()
    assert values(diag.end_epoch(1), "grad_norm")["0"] == pytest.approx(sum(norms) / 2, rel=1e-5)
    # nothing recorded in epoch 2: no gradient or update rows, the probe's rows still
    rows = diag.end_epoch(2)
    assert not values(rows, "grad_norm") and not values(rows, "update_ratio")
    assert values(rows, "weight_norm") and values(rows, "dead_fraction")


def test_a_parameter_without_a_gradient_counts_as_zero():
    net = fixed_mlp()
    net[0].bias.requires_grad_(False)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    diag = Diagnostics(net, x, y, nn.MSELoss())
    nn.functional.mse_loss(net(x), y).backward()
    diag.record_grads()
    grads = values(diag.end_epoch(1), "grad_norm")
    assert grads == pytest.approx({"0": float(net[0].weight.grad.norm()),
                                   "2": math.hypot(net[2].weight.grad.norm(), net[2].bias.grad.norm())})


def test_dead_units_are_never_positive_over_the_probe():
    net = fixed_mlp()
    # unit 0: x0 + 0.5 > 0 for the first sample; unit 1: x1 never > 0; unit 2: always exactly
    # 0 (not > 0); unit 3: -100 + ... never
    probe = torch.tensor([[1.0, -1, 2], [-3, 0, 0]])
    diag = Diagnostics(net, probe, torch.zeros(2, 2), nn.MSELoss())
    rows = diag.end_epoch(1)
    assert values(rows, "dead_fraction") == {"0": pytest.approx(3 / 4)}
    assert not values(rows, "saturated_fraction")


def test_a_conv_unit_is_a_channel_over_all_positions():
    conv = nn.Conv2d(1, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1))
        conv.bias.zero_()
    net = nn.Sequential(conv, nn.ReLU())
    # channel 0 is positive at one position of one sample only, channel 1 at the others,
    # channel 2 nowhere: one of three channels is dead (per position: 4 + 5 + 6 of 18)
    probe = torch.tensor([[[[1.0, -1], [-1, -1]]], [[[-1.0, -1], [0, -2]]]])
    diag = Diagnostics(net, probe, torch.zeros(2), nn.MSELoss())
    assert values(diag.end_epoch(1), "dead_fraction") == {"0": pytest.approx(1 / 3)}


@pytest.mark.parametrize("act, expected", [
    (nn.Sigmoid, 3 / 8),  # |x| > 4: -5, 4.5, 10 (4 itself is not)
    (nn.Tanh, 5 / 8),  # |x| > 2: -5, 4.5, 10, -4, 3.9
])
def test_saturated_share_of_sigmoid_and_tanh_inputs(act, expected):
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    net = nn.Sequential(lin, act(), nn.Linear(1, 1))
    probe = torch.tensor([-5.0, -4, -1, 0, 3.9, 4.5, 10, 2]).unsqueeze(1)
    rows = Diagnostics(net, probe, torch.zeros(8, 1), nn.MSELoss()).end_epoch(1)
    assert values(rows, "saturated_fraction") == {"0": pytest.approx(expected)}
    assert not values(rows, "dead_fraction")


def test_activations_report_under_the_nearest_layer_before_them():
    """Linear → BatchNorm1d → ReLU: the batch norm's output is what the ReLU reads."""
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(4, 2), nn.Tanh())
    rows = Diagnostics(net, torch.randn(8, 3), torch.zeros(8, 2), nn.MSELoss()).end_epoch(1)
    assert set(values(rows, "dead_fraction")) == {"1"}
    assert set(values(rows, "saturated_fraction")) == {"4"}


# ---------------------------------------------------------------------------------------------
# recurrent models: the gradient reaching the hidden state
def reference_hidden_grad(model, x, y, criterion, t):
    """mean_i ||d loss_i / d h_t|| from nn.RNN/LSTM/GRU's own kernel: run steps 0..t, make
    the last layer's state a leaf, run the rest from it."""
    rnn = model.rnn
    state = rnn(x[:, : t + 1])[1]
    h, c = state if isinstance(state, tuple) else (state, None)
    h = h.detach().requires_grad_(True)
    rest = (h, c.detach()) if c is not None else h
    if t + 1 < x.shape[1]:
        final = rnn(x[:, t + 1:], rest)[1]
    else:
        final = rest
    h_last = final[0] if isinstance(final, tuple) else final
    loss = criterion(model.head(h_last[-1]), y)
    (g,) = torch.autograd.grad(loss, h)
    return float(g[-1].norm(dim=1).mean()) * x.shape[0]


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_hidden_state_gradients_match_the_cells_own_kernel(make_config, name):
    torch.manual_seed(0)
    model = build_model(make_config(model={"name": name, **TINY[name], "num_layers": 2}),
                        data_info("sequence", "classification"))
    x, y = batch("sequence")
    criterion = nn.CrossEntropyLoss()
    rows = Diagnostics(model, x, y, criterion).end_epoch(1)

    got = [values(rows, f"hidden_grad_{at}") for at in ("first", "middle", "last")]
    steps = x.shape[1]
    model.eval()
    for found, t in zip(got, (0, steps // 2, steps - 1)):
        assert found == {"rnn": pytest.approx(reference_hidden_grad(model, x, y, criterion, t),
                                              rel=1e-4)}
    assert got[0]["rnn"] != pytest.approx(got[2]["rnn"])


@pytest.mark.parametrize("name, kind", [("rnn", "image"), ("lstm", "table"), ("gru", "sequence")])
def test_unrolled_bidirectional_net_is_the_forward_pass(make_config, name, kind):
    """Stacked and bidirectional: the same output, and the last step's gradient is the one
    autograd gives h_n's last forward-direction state on the normal forward pass."""
    torch.manual_seed(0)
    config = make_config(model={"name": name, **TINY[name], "num_layers": 2, "bidirectional": True})
    model = build_model(config, data_info(kind, "regression")).eval()
    x, y = batch(kind, task="regression")
    out, states = model.unrolled(x)
    assert torch.allclose(out, model(x), atol=1e-5)

    if kind == "image":  # read row by row
        seq = x.permute(0, 2, 1, 3).flatten(2)
    else:
        seq = x.unsqueeze(-1) if kind == "table" else x
    assert len(states) == seq.shape[1]
    (g,) = torch.autograd.grad(nn.functional.mse_loss(out, y), [states[-1]])
    _, state = model.rnn(seq)
    h_n = state[0] if isinstance(state, tuple) else state
    last = torch.cat([h_n[-2], h_n[-1]], 1)
    expected = torch.autograd.grad(nn.functional.mse_loss(model.head(last), y), h_n)[0][-2]
    assert torch.allclose(g, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# what the probe leaves alone, and a partial epoch
@pytest.mark.parametrize("name", ["mlp", "lstm"])
def test_the_probe_draws_no_random_numbers_and_leaves_grads_and_norm_stats(make_config, name):
    kind = KIND[name]
    config = make_config(model={"name": name, **TINY[name]},
                         regularization={"dropout": 0.5, "batch_norm": True})
    model = build_model(config, data_info(kind, "classification"))
    x, y = batch(kind)
    criterion = nn.CrossEntropyLoss()
    criterion(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d)).eval()
    rng = torch.get_rng_state()

    rows = Diagnostics(model, x, y, criterion).end_epoch(1)

    assert rows and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(b, old) for b, old in zip(model.buffers(), buffers))
    assert model.training and not frozen.training  # each module back in its own mode
    assert all(not m._forward_hooks for m in model.modules())


def test_a_partial_epoch_continues_from_its_state(make_config):
    """Two steps, a checkpoint (torch.save, weights_only), two more steps in a new Diagnostics:
    the rows of four steps in one."""
    model, kind = build(make_config, "mlp")
    x, y = batch(kind)
    criterion = nn.CrossEntropyLoss()
    start = {k: v.clone() for k, v in model.state_dict().items()}

    whole = Diagnostics(model, x, y, criterion)
    train_steps(model, whole, x, y, criterion, steps=4)
    expected = whole.end_epoch(1)

    model.load_state_dict(start)
    first = Diagnostics(model, x, y, criterion)
    train_steps(model, first, x, y, criterion, steps=2)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    second = Diagnostics(model, x, y, criterion)
    second.load_state_dict(torch.load(buf, weights_only=True))
    train_steps(model, second, x, y, criterion, steps=2)
    # SGD without momentum: the optimizer's state does not matter
    got = second.end_epoch(1)
    assert [r[:3] for r in got] == [r[:3] for r in expected]
    assert [r[3] for r in got] == pytest.approx([r[3] for r in expected], rel=1e-6)

    with pytest.raises(ValueError, match="layers"):
        Diagnostics(nn.Linear(2, 2), x, y, criterion).load_state_dict(first.state_dict())


# ---------------------------------------------------------------------------------------------
# diagnostics.csv and gradflow.png
def test_a_resume_drops_the_rows_past_its_checkpoint(tmp_path):
    writer = DiagnosticsWriter(tmp_path)
    writer.start(0)
    assert (tmp_path / DIAGNOSTICS).read_text() == "epoch,layer,quantity,value\n"
    for epoch in (1, 2, 3):
        writer.write([(epoch, "0", "grad_norm", 0.5 * epoch), (epoch, "head.0", "weight_norm", 1e-8)])

    resumed = DiagnosticsWriter(tmp_path)
    resumed.start(2)  # last.pt was saved after epoch 2
    assert [r[0] for r in read_rows(tmp_path / DIAGNOSTICS)] == [1, 1, 2, 2]
    resumed.write([(3, "0", "grad_norm", 7.0)])
    rows = read_rows(tmp_path / DIAGNOSTICS)
    assert rows[-1] == (3, "0", "grad_norm", 7.0)
    assert rows[:4] == [(1, "0", "grad_norm", 0.5), (1, "head.0", "weight_norm", 1e-8),
                        (2, "0", "grad_norm", 1.0), (2, "head.0", "weight_norm", 1e-8)]


def test_a_line_cut_short_by_a_kill_is_dropped_at_the_next_start(tmp_path):
    writer = DiagnosticsWriter(tmp_path)
    writer.start(0)
    writer.write([(1, "0", "grad_norm", 0.5)])
    with open(tmp_path / DIAGNOSTICS, "a") as f:
        f.write("2,0,grad_n")  # killed while appending epoch 2, before its checkpoint
    DiagnosticsWriter(tmp_path).start(1)
    assert (tmp_path / DIAGNOSTICS).read_text() == "epoch,layer,quantity,value\n1,0,grad_norm,0.5\n"


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn", "lstm", "gru"])
def test_gradflow_png_for_every_model_family(make_config, tmp_path, name):
    torch.manual_seed(0)
    model, kind = build(make_config, name)
    x, y = batch(kind)
    criterion = nn.CrossEntropyLoss()
    diag = Diagnostics(model, x, y, criterion)
    writer = DiagnosticsWriter(tmp_path)
    writer.start(0)
    for epoch in (1, 2):
        train_steps(model, diag, x, y, criterion, steps=1)
        writer.write(diag.end_epoch(epoch))

    rows = read_rows(tmp_path / DIAGNOSTICS)
    layers = [layer for layer, _ in layers_with_parameters(model)]
    assert list(dict.fromkeys(r[1] for r in rows)) == layers
    fig = gradflow_figure(rows, name)
    panels = {ax.get_title().split(" (")[0]: ax for ax in fig.axes if ax.get_title()}
    recurrent = isinstance(model, RecurrentNet)
    expected = {GRAD_TITLE, UPDATE_TITLE, HEALTH_TITLE, *([HIDDEN_TITLE] if recurrent else [])}
    assert set(panels) == expected
    lines = panels[GRAD_TITLE].get_lines()
    assert len(lines) == 2 and all(len(line.get_xdata()) == len(layers) for line in lines)
    assert [t.get_text() for t in panels[GRAD_TITLE].get_xticklabels()] == layers
    assert panels[GRAD_TITLE].get_yscale() == "log"
    import matplotlib.pyplot as plt

    plt.close(fig)

    out = tmp_path / "gradflow.png"
    plot_gradflow(tmp_path / DIAGNOSTICS, out, name)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000


def test_no_rows_no_picture(tmp_path):
    plot_gradflow([], tmp_path / "gradflow.png", "nothing")
    assert not (tmp_path / "gradflow.png").exists()


# ---------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recording_a_step_does_not_sync_the_host(make_config):
    model, kind = build(make_config, "mlp")
    model = model.cuda()
    x, y = (t.cuda() for t in batch(kind))
    criterion = nn.CrossEntropyLoss()
    diag = Diagnostics(model, x, y, criterion)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the second step finds its buffers and index tensors made
        opt.zero_grad()
        criterion(model(x), y).backward()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            diag.record_grads()
            diag.before_update()
            opt.step()
            diag.after_update()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert values(diag.end_epoch(1), "grad_norm")
