"""Bézier mode connectivity: the mc formula, the curve, its training, BatchNorm, determinism."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.landscape.curves import (
    LR_FLOOR,
    BezierCurve,
    bezier_mode_connectivity,
    curve_lr,
    mode_connectivity_value,
)
from phasezoo.models.utils import recompute_bn_statistics
from phasezoo.tasks import ClassificationTask

TASK = ClassificationTask()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _bn_net(seed=0, c=2, k=3, classes=3):
    """BatchNorm directly on the input, then conv + BN + ReLU + linear, for 4×4 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.BatchNorm2d(c), nn.Conv2d(c, k, 3, padding=1), nn.BatchNorm2d(k), nn.ReLU(),
        nn.Flatten(), nn.Linear(k * 16, classes),
    )


def _bn_data(n=100, c=2, classes=3, seed=0):
    g = _gen(seed)
    # per-channel offsets and scales, so the input statistics are far from (0, 1)
    x = torch.randn(n, c, 4, 4, generator=g) * torch.tensor([2.0, 0.5]).view(1, c, 1, 1) \
        + torch.tensor([3.0, -1.0]).view(1, c, 1, 1)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _mc(model_a, model_b, x, y, **kw):
    kw.setdefault("epochs", 0)
    return bezier_mode_connectivity(model_a, model_b, x, y, loss_fn=TASK.loss,
                                    evaluate=TASK.evaluate, **kw)


# --------------------------------------------------------------------------- mc formula


def test_mode_connectivity_value_on_hand_made_profiles():
    mc, i = mode_connectivity_value([0.1, 0.5, 0.1])  # barrier: ends' mean 0.1, middle 0.5
    assert mc == pytest.approx(-0.4) and i == 1
    mc, i = mode_connectivity_value([1.0, 0.2, 0.8])  # middle better: ends' mean 0.9
    assert mc == pytest.approx(0.7) and i == 1
    # t* is interior only: a straight monotone 3-point profile is connected (mc = 0) ...
    assert mode_connectivity_value([0.0, 0.5, 1.0]) == (0.0, 1)
    # ... while at 5 points the reference is still the ends' mean (0.5), not the chord:
    # interior deviations 0.25, 0, 0.25 -> first on the tie, mc = 0.5 - 0.25
    assert mode_connectivity_value([0.0, 0.25, 0.5, 0.75, 1.0]) == (0.25, 1)
    # the largest interior deviation wins, whatever its sign
    mc, i = mode_connectivity_value([0.2, 0.1, 0.9, 0.3, 0.2])
    assert mc == pytest.approx(-0.7) and i == 2
    mc, i = mode_connectivity_value([0.2, 0.3, 0.25, 0.0, 0.2])
    assert mc == pytest.approx(0.2) and i == 3
    # endpoints are never t*, even when they deviate most
    assert mode_connectivity_value([0.0, 0.05, 0.0, 0.05, 10.0])[1] in (1, 2, 3)


def test_mode_connectivity_value_edge_cases():
    with pytest.raises(ValueError, match="at least 3"):
        mode_connectivity_value([0.1, 0.2])
    mc, i = mode_connectivity_value([0.1, float("nan"), 0.1])
    assert math.isnan(mc) and i == -1
    assert mode_connectivity_value([0.1, float("inf"), 0.1]) == (-math.inf, 1)


# --------------------------------------------------------------------------- lr schedule


@pytest.mark.parametrize("schedule", ["garipov", "cosine"])
def test_lr_schedule_is_a_pure_function_of_the_step(schedule):
    total, lr = 37, 0.2
    lrs = [curve_lr(s, total, lr, schedule) for s in range(total)]
    assert lrs == [curve_lr(s, total, lr, schedule) for s in range(total)]  # same step, same lr
    assert curve_lr(20, total, lr, schedule) == curve_lr(20, total, lr, schedule)
    assert lrs[0] == pytest.approx(lr)
    assert lrs[-1] == pytest.approx(lr * LR_FLOOR)  # the documented floor, reached at the end
    assert all(a >= b - 1e-15 for a, b in zip(lrs, lrs[1:]))  # never increases
    assert min(lrs) >= lr * LR_FLOOR - 1e-15  # never compounds below the floor
    if schedule == "garipov":
        assert all(v == lr for v in lrs[: total // 2])  # constant for the first half
    with pytest.raises(ValueError):
        curve_lr(total, total, lr, schedule)
    assert curve_lr(5, 10, 0.1, "constant") == 0.1


def test_training_ends_at_the_floor_rate():
    x, y = _bn_data(64)
    res = _mc(_bn_net(0), _bn_net(1), x, y, epochs=2, lr=0.05, batch_size=16, num_t=3)
    assert res["settings"]["steps"] == 2 * 4
    assert res["settings"]["final_lr"] == pytest.approx(0.05 * LR_FLOOR)
    assert len(res["train_loss_curve"]) == 2


# --------------------------------------------------------------------------- the curve


def test_bezier_with_middle_at_midpoint_is_the_straight_line():
    """(1−t)²a + 2t(1−t)(a+b)/2 + t²b = (1−t)a[(1−t)+t] + tb[(1−t)+t] = (1−t)a + tb."""
    a, b = _bn_net(0), _bn_net(1)
    curve = BezierCurve(a, b)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for t in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0):
        at_t = curve.parameters_at(t)
        assert set(at_t) == set(pa)  # BatchNorm weight and bias are on the curve too
        for k in pa:
            assert torch.allclose(at_t[k], (1 - t) * pa[k] + t * pb[k], atol=1e-6)
    assert all(c.requires_grad and c.is_leaf for c in curve.theta_c.values())


def test_different_architectures_are_rejected():
    with pytest.raises(ValueError, match="same architecture"):
        BezierCurve(_bn_net(0, k=3), _bn_net(0, k=4))


def test_identical_endpoints_are_connected():
    x, y = _bn_data(96)
    a = _bn_net(0)
    b = copy.deepcopy(a)
    res = _mc(a, b, x, y, epochs=0, batch_size=32)
    # the curve is the single point θ_a: every t gives the same model, mc is exactly 0
    assert abs(res["mc_error"]) < 1e-6 and abs(res["mc_loss"]) < 1e-6
    assert max(res["loss"]) - min(res["loss"]) < 1e-6
    # lr = 0: training cannot move θ_c
    res = _mc(a, b, x, y, epochs=1, lr=0.0, batch_size=32)
    assert abs(res["mc_loss"]) < 1e-6
    # with training θ_c moves down the gradient of the curve loss 2t(1−t)∇L(θ(t)), so the
    # interior can only get better than the (untrained) endpoints: no barrier appears, and
    # the change stays small after one short epoch at a small rate
    res = _mc(a, b, x, y, epochs=1, lr=0.01, batch_size=32)
    assert res["loss"][0] == pytest.approx(res["loss"][-1], abs=1e-6)
    assert -1e-4 < res["mc_loss"] < 0.05
    assert min(res["loss"][1:-1]) <= res["loss"][0] + 1e-6


def _sign_twin_mlp(sign, k=5.0):
    """f(x) = W2 relu(W1 x): hidden units relu(±x1), logits (k·x1, −k·x1).

    ``sign=-1`` negates every weight, which swaps the two hidden units and the output columns:
    the same function, so both twins solve "class 0 iff x1 > 0" equally well. The straight line
    between them is θ(t) = (1−2t)θ_a, whose logits are (1−2t)²·k·x1 (ReLU is positively
    homogeneous): all zero at t = ½.
    """
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        m[0].weight.copy_(sign * torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        m[0].bias.zero_()
        m[2].weight.copy_(sign * torch.tensor([[k, -k], [-k, k]]))
        m[2].bias.zero_()
    return m


def test_sign_symmetric_twins_have_a_barrier_on_the_straight_line():
    k = 5.0
    g = _gen(0)
    x1 = (0.5 + 1.5 * torch.rand(200, generator=g)) * torch.tensor([1.0, -1.0]).repeat(100)
    x = torch.stack([x1, torch.randn(200, generator=g)], dim=1)
    y = (x1 < 0).long()
    a, b = _sign_twin_mlp(1.0, k), _sign_twin_mlp(-1.0, k)
    res = _mc(a, b, x, y, epochs=0)  # θ_c at the midpoint: the curve is the straight line
    # closed form: per-sample cross-entropy log(1 + exp(−2·(1−2t)²·k·|x1|))
    for t, loss in zip(res["t"], res["loss"]):
        expected = F.softplus(-2 * (1 - 2 * t) ** 2 * k * x1.abs()).mean().item()
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert res["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert res["loss"][2] == pytest.approx(math.log(2), abs=1e-6)
    assert res["error"] == [0.0, 0.0, 0.5, 0.0, 0.0]  # zero logits: argmax says class 0
    assert res["mc_loss"] < -0.68 and res["t_star_loss"] == 0.5
    assert res["mc_error"] == pytest.approx(-0.5) and res["t_star_error"] == 0.5
    assert res["settings"]["bn_recompute"].startswith("none")


def test_curve_training_lowers_a_barrier_between_two_trained_mlps():
    g = _gen(1)
    n = 256
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] * x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long())  # 4 classes, non-linear

    def trained(seed):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
        opt = torch.optim.Adam(m.parameters(), lr=0.02)
        for _ in range(300):
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return m

    a, b = trained(0), trained(1)
    line = _mc(a, b, x, y, epochs=0)
    fitted = _mc(a, b, x, y, epochs=20, lr=0.1, batch_size=32)
    assert line["mc_loss"] < -0.1  # two independent solutions: a barrier on the straight line
    assert fitted["mc_loss"] > 0.5 * line["mc_loss"]  # the fitted curve goes round it
    assert fitted["loss"][0] == pytest.approx(line["loss"][0])  # endpoints fixed
    assert fitted["loss"][-1] == pytest.approx(line["loss"][-1])


# --------------------------------------------------------------------------- BatchNorm


def test_bn_statistics_are_recomputed_by_a_cumulative_average_at_every_t():
    x, y = _bn_data(100)  # 100 = 3·32 + 4: an uneven last batch
    a, b = _bn_net(0), _bn_net(1)
    seen = []

    def evaluate(model, xe, ye):
        bn0 = model[0]
        seen.append({
            "training": model.training,
            "mean": bn0.running_mean.clone(),
            "var": bn0.running_var.clone(),
            "momentum": bn0.momentum,
            "model": copy.deepcopy(model),
        })
        return TASK.evaluate(model, xe, ye)

    res = bezier_mode_connectivity(a, b, x, y, loss_fn=TASK.loss, evaluate=evaluate, epochs=1,
                                   lr=0.05, batch_size=32, bn_batch_size=32)
    # the straight line's midpoint before training (a diagnostic), then the 5 values of t
    assert len(seen) == 6 and res["settings"]["bn_recompute"].startswith("cumulative average")
    seen = seen[1:]
    data_mean = x.mean(dim=(0, 2, 3))
    for s in seen:
        assert not s["training"]  # evaluated in eval mode
        assert s["momentum"] == 0.1  # BatchNorm momentum restored
        # BatchNorm on the input: its running mean is the data mean, whatever t and batch size
        assert torch.allclose(s["mean"], data_mean, atol=1e-5)
    # and the statistics of the whole model at t=0 equal a fresh cumulative pass
    m0 = seen[0]["model"]
    ref = copy.deepcopy(m0)
    for bn in (ref[0], ref[2]):
        bn.running_mean.fill_(123.0)  # anything: the recompute resets it
    recompute_bn_statistics(ref, x, batch_size=32)
    for bn, bn_ref in ((m0[0], ref[0]), (m0[2], ref[2])):
        assert torch.allclose(bn.running_mean, bn_ref.running_mean, atol=1e-6)
        assert torch.allclose(bn.running_var, bn_ref.running_var, atol=1e-6)
    # with one batch covering the data the variance is the data's unbiased variance
    one = copy.deepcopy(m0)
    recompute_bn_statistics(one, x, batch_size=len(x))
    assert torch.allclose(one[0].running_var, x.transpose(0, 1).reshape(2, -1).var(dim=1), atol=1e-4)
    # the interior models differ from the endpoints (their conv weights moved), and so do
    # the statistics of the BatchNorm behind the conv
    assert not torch.allclose(seen[2]["model"][2].running_mean, seen[0]["model"][2].running_mean)


def test_recompute_handles_a_trailing_single_sample_and_restores_mode():
    x, _ = _bn_data(65)  # 2·32 + 1: the single sample joins the previous batch
    model = _bn_net(0).eval()
    assert recompute_bn_statistics(model, x, batch_size=32)
    assert not model.training
    assert torch.allclose(model[0].running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not recompute_bn_statistics(nn.Linear(3, 2), torch.randn(4, 3), batch_size=2)


# --------------------------------------------------------------------------- hygiene


def test_endpoint_models_are_never_modified():
    x, y = _bn_data(64)
    a, b = _bn_net(0), _bn_net(1)
    a.train()
    b.eval()
    before_a, before_b = _snapshot(a), _snapshot(b)
    _mc(a, b, x, y, epochs=2, lr=0.1, batch_size=16)
    for before, model in ((before_a, a), (before_b, b)):
        after = model.state_dict()
        assert set(after) == set(before)
        for k in before:
            assert torch.equal(after[k], before[k]), k
    assert a.training and not b.training
    assert all(p.grad is None for p in list(a.parameters()) + list(b.parameters()))


def test_same_seed_same_result_and_settings_are_recorded():
    x, y = _bn_data(64)
    a, b = _bn_net(0), _bn_net(1)
    kw = dict(epochs=2, lr=0.05, batch_size=16, num_t=5)
    r1 = _mc(a, b, x, y, seed=3, **kw)
    r2 = _mc(a, b, x, y, seed=3, **kw)
    r3 = _mc(a, b, x, y, seed=4, **kw)
    assert r1 == r2
    assert r1["train_loss_curve"] != r3["train_loss_curve"]
    s = r1["settings"]
    for key, value in dict(epochs=2, lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=16,
                           num_t=5, seed=3, schedule="garipov", bn_batch_size=16).items():
        assert s[key] == value, key
    assert set(r1) >= {"mc_error", "mc_loss", "t", "loss", "error", "t_star_error",
                       "t_star_loss", "settings", "train_loss_curve"}
    assert r1["t_star_loss"] in (0.25, 0.5, 0.75)


def test_argument_checks():
    x, y = _bn_data(16)
    a, b = _bn_net(0), _bn_net(1)
    with pytest.raises(ValueError, match="num_t"):
        _mc(a, b, x, y, num_t=2)
    with pytest.raises(ValueError, match="schedule"):
        _mc(a, b, x, y, schedule="step")
    with pytest.raises(ValueError, match="epochs"):
        _mc(a, b, x, y, epochs=-1)


def test_chord_referenced_mc_on_constructed_profiles():
    # a barrier-free straight profile between unequal endpoints: the paper's mean reference
    # reports +-|v1 - v0|/4, the chord reference 0
    straight = [0.0, 0.05, 0.1, 0.15, 0.2]
    assert mode_connectivity_value(straight)[0] == pytest.approx(0.05)
    mc, _ = mode_connectivity_value(straight, reference="chord")
    assert mc == pytest.approx(0.0, abs=1e-15)
    # with interior noise of 1e-3 the chord value stays within the noise
    rng = np.random.default_rng(0)
    for _ in range(20):
        noisy = np.array(straight) + np.r_[0.0, rng.normal(0, 1e-3, 3), 0.0]
        assert abs(mode_connectivity_value(noisy, reference="chord")[0]) < 5e-3
        assert abs(mode_connectivity_value(noisy)[0]) > 0.02  # the mean reference exceeds tau = 0.02
    # a barrier of height 0.3 above the chord at t = 0.5, endpoints 0.1 and 0.3
    mc, i = mode_connectivity_value([0.1, 0.25, 0.5, 0.35, 0.3], reference="chord")
    assert (mc, i) == (pytest.approx(-0.3), 2)
    # equal endpoints: both references agree
    prof = [0.2, 0.4, 0.6, 0.3, 0.2]
    assert mode_connectivity_value(prof, reference="chord") == mode_connectivity_value(prof)
    with pytest.raises(ValueError, match="reference"):
        mode_connectivity_value(prof, reference="median")


# --------------------------------------------------------------------------- convergence


def test_curve_convergence_rule_on_constructed_loss_histories():
    from phasezoo.landscape.curves import curve_converged, window_means

    assert window_means([1.0, 3.0, 5.0, 7.0], windows=2) == [2.0, 6.0]
    assert window_means([], windows=10) == []
    flat = [1.0 / (1 + k) for k in range(8)] + [0.108, 0.104]  # falls 0.90, then 2.2% of it at the end
    assert curve_converged(flat, steps=500, diverged_at_step=None) == (True, "2% of its fall in the last fifth")
    # a noisy plateau at a small loss: window means jump by 30% relatively, the fall is 0.3
    noisy = [0.32, 0.1, 0.05, 0.04, 0.03, 0.045, 0.03, 0.029, 0.031, 0.02]
    assert curve_converged(noisy, steps=500, diverged_at_step=None)[0] is True
    falling = [1.0 - 0.08 * k for k in range(10)]  # a straight decline: 2/9 of the fall in the last fifth
    ok, why = curve_converged(falling, steps=500, diverged_at_step=None)
    assert not ok and "still falling: 22% of its fall" in why
    assert curve_converged(flat, steps=30, diverged_at_step=None)[0] is False      # too few steps
    assert curve_converged(flat, steps=500, diverged_at_step=17)[0] is False       # diverged
    assert curve_converged([0.5, 0.5, 0.6], steps=500, diverged_at_step=None) == (True, "no fall in training")
    assert curve_converged([0.5, 0.9, 0.8, 0.6], steps=500, diverged_at_step=None)[0] is False  # rose, then fell


def test_an_untrained_curve_is_flagged_and_a_trained_one_is_not():
    x, y = _bn_data(256)
    a, b = _bn_net(0), _bn_net(1)
    few = bezier_mode_connectivity(a, b, x, y, loss_fn=TASK.loss, evaluate=TASK.evaluate, epochs=1,
                                   lr=0.05, batch_size=32)
    assert few["diagnostics"]["converged"] is False and "steps <" in few["diagnostics"]["convergence"]
    d = few["diagnostics"]
    assert d["loss_endpoints"] == [few["loss"][0], few["loss"][-1]] and d["loss_mid_after"] == few["loss"][2]
    zero = bezier_mode_connectivity(a, b, x, y, loss_fn=TASK.loss, evaluate=TASK.evaluate, epochs=0)
    # no training: the curve is the straight line, so its midpoint is the straight line's
    assert zero["diagnostics"]["loss_mid_before"] == pytest.approx(zero["diagnostics"]["loss_mid_after"], rel=1e-5)
