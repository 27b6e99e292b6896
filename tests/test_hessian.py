"""Hessian top eigenvalue and trace against the dense Hessian of tiny models."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.landscape.hessian import (DEFAULT_CHUNK_SIZE, DEFAULT_HVP, HVP_IMPLEMENTATIONS,
                                        HessianEstimate, HessianOperator, hessian_top_eigenvalue,
                                        hessian_trace, top_eigenvalue, trace)


# ---------------------------------------------------------------------------------------------
# Tiny models, data and the dense ground truth


def make_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))  # 75 parameters


def mlp_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in (7, 13, 4)]


class ConvBN(nn.Module):
    """Conv(1→3, 3×3) → BatchNorm2d → ReLU → max-pool 2 → Linear(12→4): 88 parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.bn(self.conv(x))), 2), 1))


def make_convbn() -> nn.Module:
    torch.manual_seed(2)
    m = ConvBN()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        m.bn.running_mean.copy_(torch.rand(3) + 0.5)
        m.bn.running_var.copy_(torch.rand(3) * 2 + 0.5)
        m.bn.weight.copy_(torch.rand(3) + 0.5)
        m.bn.bias.copy_(torch.randn(3) * 0.1)
    return m


def conv_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in (10, 6)]


def dense_hessian(model: nn.Module, loss_fn, batches) -> torch.Tensor:
    """Hessian of the loss of the CONCATENATED data w.r.t. the flattened trainable parameters,
    in float64, model in eval mode (an independent computation: no per-batch weighting)."""
    m = copy.deepcopy(model).double().eval()
    x = torch.cat([b[0] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])
    named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    constants = {n: p for n, p in m.named_parameters() if not p.requires_grad}
    constants.update(dict(m.named_buffers()))

    def f(flat):
        theta = {n: t.view(s) for (n, _), t, s in zip(named, flat.split(sizes), shapes)}
        return loss_fn(torch.func.functional_call(m, (theta, constants), (x,)), y)

    flat = torch.cat([p.detach().flatten() for _, p in named])
    return torch.autograd.functional.hessian(f, flat)


def dense_per_batch(model: nn.Module, loss_fn, batches) -> torch.Tensor:
    """Σ_b (n_b/N) H_b: the Hessian of the size-weighted mean of the per-batch losses."""
    n = sum(len(b[0]) for b in batches)
    return sum(dense_hessian(model, loss_fn, [b]) * (len(b[0]) / n) for b in batches)


def flat(ts) -> torch.Tensor:
    return torch.cat([t.flatten() for t in ts]).double()


def dense_truth(model, loss_fn, batches) -> tuple[float, float, torch.Tensor]:
    h = dense_hessian(model, loss_fn, batches)
    eig = torch.linalg.eigvalsh(h)
    return float(eig[eig.abs().argmax()]), float(torch.trace(h)), h


CASES = {
    "mlp": (make_mlp, mlp_batches),
    "convbn": (make_convbn, conv_batches),
}


@pytest.fixture(scope="module")
def truths():
    return {name: dense_truth(make(), F.cross_entropy, data()) for name, (make, data) in CASES.items()}


# ---------------------------------------------------------------------------------------------
# Accuracy against the dense Hessian


@pytest.mark.parametrize("case", list(CASES))
def test_hvp_equals_dense_hessian_of_the_concatenated_data(case, truths):
    make, data = CASES[case]
    model, batches = make(), data()
    h = truths[case][2]
    g = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=g) for p in model.parameters()]
    for hvp in HVP_IMPLEMENTATIONS:
        # None: the given batches (unequal sizes, weighted by size); 5: regrouped into chunks of
        # 5, 5, 5, 5, 4 (mlp) or 4 x 4 (convbn) samples; default: one chunk of everything
        for chunk_size in (None, 5, DEFAULT_CHUNK_SIZE):
            with HessianOperator(model, F.cross_entropy, batches, hvp=hvp, chunk_size=chunk_size) as op:
                assert op.num_samples == sum(len(b[0]) for b in batches)
                expected = {None: len(batches), 5: -(-op.num_samples // 5), DEFAULT_CHUNK_SIZE: 1}
                assert len(op.chunks) == expected[chunk_size]
                hv = flat(op.matvec(v))
            # = the Hessian of the concatenated data
            assert torch.allclose(hv, h @ flat(v), rtol=1e-4, atol=1e-5), (hvp, chunk_size)


def test_samples_are_not_regrouped_when_they_interact_or_cannot_be_concatenated():
    # BatchNorm without running statistics normalises with batch statistics even in eval mode:
    # the loss depends on how samples are batched, so the batches are kept as given.
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Tanh(), nn.Linear(4, 3))
    batches = mlp_batches()
    h = dense_per_batch(model, F.cross_entropy, batches)
    assert not torch.allclose(h, dense_hessian(model, F.cross_entropy, batches), atol=1e-3)
    v = [torch.randn_like(p) for p in model.parameters()]
    for hvp in HVP_IMPLEMENTATIONS:
        with HessianOperator(model, F.cross_entropy, batches, hvp=hvp) as op:
            assert op.chunk_size is None and len(op.chunks) == 3
            assert torch.allclose(flat(op.matvec(v)), h @ flat(v), rtol=1e-4, atol=1e-5)
    # images of two sizes (a model with adaptive pooling takes both) cannot be concatenated
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    g = torch.Generator().manual_seed(8)
    batches = [(torch.randn(4, 1, s, s, generator=g), torch.randint(0, 3, (4,), generator=g)) for s in (5, 6)]
    est = trace(model, F.cross_entropy, batches, max_iter=5)
    assert est.settings["chunk_size"] is None and est.settings["num_chunks"] == 2
    h = dense_per_batch(model, F.cross_entropy, batches)
    with HessianOperator(model, F.cross_entropy, batches) as op:
        assert torch.allclose(flat(op.matvec([torch.ones_like(p) for p in model.parameters()])),
                              h.sum(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_top_eigenvalue_matches_the_dense_largest_magnitude_eigenvalue(case, truths):
    make, data = CASES[case]
    lam, _, _ = truths[case]
    est = top_eigenvalue(make(), F.cross_entropy, data(), max_iter=1000, tol=1e-7)
    assert est.converged
    assert est.value == pytest.approx(lam, rel=1e-2)


@pytest.mark.parametrize("case", list(CASES))
def test_trace_matches_the_dense_trace(case, truths):
    make, data = CASES[case]
    _, tr, h = truths[case]
    # the test is only honest if the trace is far from zero relative to the probe noise
    probe_std = math.sqrt(2 * float((h**2).sum() - (h.diagonal() ** 2).sum()))
    assert abs(tr) > 0.5 * probe_std
    est = trace(make(), F.cross_entropy, data(), max_iter=2000, tol=0.0, probe_batch=100)
    assert est.iterations == 2000 and not est.converged  # tol=0: a fixed number of probes
    assert est.value == pytest.approx(tr, rel=0.05)
    assert abs(est.value - tr) < 3 * est.stderr
    # Rademacher probe variance is 2·Σ_{i≠j} H_ij²: the reported stderr estimates it
    assert est.stderr == pytest.approx(probe_std / math.sqrt(2000), rel=0.15)


def test_negative_curvature_power_iteration_and_trace_stopping_rule():
    """Negative-definite Hessian: power iteration returns the most negative eigenvalue, and the
    trace does not stop after two probes (PyHessian's rule, lacking abs(), would)."""
    torch.manual_seed(4)
    model = nn.Linear(6, 1, bias=False)
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(n, 6, generator=g), torch.zeros(n)) for n in (9, 5)]

    def neg_sq(out, _y):  # loss = −mean(z²): H = −(2/N)·XᵀX
        return -(out.squeeze(1) ** 2).mean()

    lam, tr, _ = dense_truth(model, neg_sq, batches)
    assert lam < 0 and tr < 0
    assert top_eigenvalue(model, neg_sq, batches, max_iter=2000, tol=1e-8).value == pytest.approx(lam, rel=1e-3)
    est = trace(model, neg_sq, batches, max_iter=100, tol=1e-3, probe_batch=1)
    assert est.iterations > 2
    values = est.history
    m1, m2 = values[0], (values[0] + values[1]) / 2
    assert abs(m2 - m1) / (m1 + 1e-6) < 1e-3  # PyHessian's ratio is negative: it stops at 2
    fixed = trace(model, neg_sq, batches, max_iter=3000, tol=0.0, probe_batch=500)
    assert abs(fixed.value - tr) < 3 * fixed.stderr


# ---------------------------------------------------------------------------------------------
# Side effects, reproducibility, implementations


def test_mode_grads_and_buffers_are_left_untouched():
    model, batches = make_convbn(), conv_batches()
    model.train()
    model.fc.eval()  # a mixed mode is restored module by module
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    top_eigenvalue(model, F.cross_entropy, batches, max_iter=5)
    trace(model, F.cross_entropy, batches, max_iter=5, probe_batch=3)
    assert model.training and model.conv.training and model.bn.training and not model.fc.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # eval-mode BN
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())


def test_mode_is_restored_on_exceptions():
    model, batches = make_mlp(), mlp_batches()
    model.train()

    def broken(out, y):
        raise RuntimeError("boom")

    for fn in (top_eigenvalue, trace):
        with pytest.raises(RuntimeError, match="boom"):
            fn(model, broken, batches)
        assert model.training


def test_same_seed_same_value_other_seed_other_value():
    model, batches = make_mlp(), mlp_batches()
    a = trace(model, F.cross_entropy, batches, seed=7)
    b = trace(model, F.cross_entropy, batches, seed=7)
    c = trace(model, F.cross_entropy, batches, seed=8)
    assert a == b and a.value != c.value
    e1 = top_eigenvalue(model, F.cross_entropy, batches, seed=7)
    e2 = top_eigenvalue(model, F.cross_entropy, batches, seed=7)
    assert e1 == e2
    assert hessian_trace(model, F.cross_entropy, batches, seed=7) == a.value
    assert hessian_top_eigenvalue(model, F.cross_entropy, batches, seed=7) == e1.value


@pytest.mark.parametrize("case", list(CASES))
def test_hvp_implementations_agree(case):
    make, data = CASES[case]
    model, batches = make(), data()
    eig = [top_eigenvalue(model, F.cross_entropy, batches, max_iter=50, tol=1e-6, hvp=h) for h in HVP_IMPLEMENTATIONS]
    tr = [trace(model, F.cross_entropy, batches, max_iter=40, tol=1e-4, hvp=h, probe_batch=p, chunk_size=c)
          for h in HVP_IMPLEMENTATIONS for p in (1, 6) for c in (DEFAULT_CHUNK_SIZE, None)]
    for est in eig[1:]:
        assert est.value == pytest.approx(eig[0].value, rel=1e-4)
    for est in tr[1:]:
        assert est.value == pytest.approx(tr[0].value, rel=1e-4)
        assert est.iterations == tr[0].iterations


def test_batched_probes_give_the_sequential_trace():
    model, batches = make_convbn(), conv_batches()
    seq = trace(model, F.cross_entropy, batches, max_iter=60, tol=1e-3, seed=1, probe_batch=1)
    assert 2 < seq.iterations < 60 and seq.converged  # the rule fired mid-chunk below
    for k in (4, 7, 64):
        bat = trace(model, F.cross_entropy, batches, max_iter=60, tol=1e-3, seed=1, probe_batch=k)
        assert bat.iterations == seq.iterations and bat.converged
        assert bat.value == pytest.approx(seq.value, rel=1e-5)
        assert bat.history == pytest.approx(seq.history, rel=1e-5)


def test_unused_and_frozen_parameters():
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = make_mlp()
            self.unused = nn.Linear(4, 4)  # never called: zero rows and columns in H
            self.frozen = nn.Parameter(torch.tensor(1.5), requires_grad=False)

        def forward(self, x):
            return self.body(x) * self.frozen

    model, batches = Partly(), mlp_batches()
    lam, tr, h = dense_truth(model, F.cross_entropy, batches)
    assert h.shape == (75 + 20, 75 + 20)  # frozen parameter excluded
    for hvp in HVP_IMPLEMENTATIONS:
        e = top_eigenvalue(model, F.cross_entropy, batches, max_iter=1000, tol=1e-7, hvp=hvp)
        assert e.value == pytest.approx(lam, rel=1e-2)
        t = trace(model, F.cross_entropy, batches, max_iter=300, tol=0.0, hvp=hvp, probe_batch=100)
        assert abs(t.value - tr) < 4 * t.stderr
        assert e.settings["num_params"] == 95
    assert all(p.grad is None for p in model.parameters())


def test_linear_loss_has_zero_hessian():
    model = nn.Linear(3, 1)
    batches = [(torch.randn(4, 3), torch.zeros(4))]

    def linear_loss(out, _y):  # gradient is constant: autograd sees no second-order graph
        return out.mean()

    for hvp in HVP_IMPLEMENTATIONS:
        assert top_eigenvalue(model, linear_loss, batches, hvp=hvp).value == 0.0
        assert trace(model, linear_loss, batches, hvp=hvp).value == 0.0


def test_settings_iterations_and_stderr_are_recorded():
    model, batches = make_mlp(), mlp_batches()
    e = top_eigenvalue(model, F.cross_entropy, batches, max_iter=30, tol=1e-3, seed=3)
    t = trace(model, F.cross_entropy, batches, max_iter=30, tol=1e-3, seed=3, probe_batch=5)
    assert isinstance(e, HessianEstimate) and isinstance(t, HessianEstimate)
    common = {"max_iter": 30, "tol": 1e-3, "seed": 3, "num_samples": 24, "num_batches": 3, "num_params": 75,
              "hvp": DEFAULT_HVP, "chunk_size": DEFAULT_CHUNK_SIZE, "num_chunks": 1}
    assert e.settings == {**common, "method": "power_iteration", "probe_batch": 1}
    assert t.settings == {**common, "method": "hutchinson_rademacher", "probe_batch": 5}
    assert 2 <= e.iterations <= 30 and len(e.history) == e.iterations and e.stderr is None
    assert 2 <= t.iterations <= 30 and len(t.history) == t.iterations
    assert t.stderr == pytest.approx(torch.tensor(t.history).double().std().item() / math.sqrt(t.iterations))
    assert t.value == pytest.approx(sum(t.history) / t.iterations)
    d = json.loads(json.dumps(t.to_dict()))
    assert d["value"] == t.value and d["iterations"] == t.iterations and d["settings"] == t.settings
    with pytest.raises(AttributeError):
        t.value = 0.0  # frozen
    capped = top_eigenvalue(model, F.cross_entropy, batches, max_iter=1, tol=1e-3)
    assert capped.iterations == 1 and not capped.converged


def test_invalid_arguments():
    model, batches = make_mlp(), mlp_batches()
    with pytest.raises(ValueError, match="hvp"):
        trace(model, F.cross_entropy, batches, hvp="nope")
    with pytest.raises(ValueError, match="max_iter"):
        top_eigenvalue(model, F.cross_entropy, batches, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        top_eigenvalue(model, F.cross_entropy, batches, tol=-1.0)
    with pytest.raises(ValueError, match="probe_batch"):
        trace(model, F.cross_entropy, batches, probe_batch=0)
    with pytest.raises(ValueError, match="chunk_size"):
        trace(model, F.cross_entropy, batches, chunk_size=0)
    with pytest.raises(ValueError, match="empty"):
        trace(model, F.cross_entropy, [])
    frozen = make_mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        trace(frozen, F.cross_entropy, batches)
