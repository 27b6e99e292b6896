"""Hessian-vector products against the dense Hessian of tiny models (and those models, which
``tests/test_hessian.py`` shares)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.landscape.hvp import (DEFAULT_CHUNK_SIZE, HVP_IMPLEMENTATIONS, HessianOperator, dot, flat_dtype,
                                    flatten, gaussian, matvecs, rademacher, unflatten)

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


CASES = {
    "mlp": (make_mlp, mlp_batches),
    "convbn": (make_convbn, conv_batches),
}


# ---------------------------------------------------------------------------------------------
# Products against the dense Hessian


@pytest.mark.parametrize("case", list(CASES))
def test_hvp_equals_dense_hessian_of_the_concatenated_data(case):
    make, data = CASES[case]
    model, batches = make(), data()
    h = dense_hessian(model, F.cross_entropy, batches)
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
    h = dense_per_batch(model, F.cross_entropy, batches)
    with HessianOperator(model, F.cross_entropy, batches) as op:
        assert op.chunk_size is None and len(op.chunks) == 2
        assert torch.allclose(flat(op.matvec([torch.ones_like(p) for p in model.parameters()])),
                              h.sum(1), rtol=1e-4, atol=1e-5)


def test_batched_products_equal_single_products():
    model, batches = make_convbn(), conv_batches()
    g = torch.Generator().manual_seed(4)
    vs = [rademacher(list(model.parameters()), g) for _ in range(5)]
    for hvp in HVP_IMPLEMENTATIONS:
        with HessianOperator(model, F.cross_entropy, batches, hvp=hvp) as op:
            single = [flat(op.matvec(v)) for v in vs]
            # probe_batch 2 over 5 vectors: two batched products and one single one
            for probe_batch in (2, 5):
                batched = [flat(hv) for hv in matvecs(op, vs, probe_batch)]
                assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(single, batched)), hvp


# ---------------------------------------------------------------------------------------------
# Side effects and arguments


def test_mode_grads_and_buffers_are_left_untouched():
    model, batches = make_convbn(), conv_batches()
    model.train()
    model.fc.eval()  # a mixed mode is restored module by module
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    v = [torch.ones_like(p) for p in model.parameters()]
    for hvp in HVP_IMPLEMENTATIONS:
        with HessianOperator(model, F.cross_entropy, batches, hvp=hvp) as op:
            assert not model.training and not model.bn.training
            op.matvec(v)
            matvecs(op, [v, v, v], 3)
        assert model.training and model.conv.training and model.bn.training and not model.fc.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # eval-mode BN
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())


def test_mode_is_restored_on_exceptions():
    model, batches = make_mlp(), mlp_batches()
    model.train()

    def broken(out, y):
        raise RuntimeError("boom")

    v = [torch.ones_like(p) for p in model.parameters()]
    for hvp in HVP_IMPLEMENTATIONS:
        with pytest.raises(RuntimeError, match="boom"):
            with HessianOperator(model, broken, batches, hvp=hvp) as op:
                op.matvec(v)
        assert model.training


def test_invalid_arguments():
    model, batches = make_mlp(), mlp_batches()
    with pytest.raises(ValueError, match="hvp"):
        HessianOperator(model, F.cross_entropy, batches, hvp="nope")
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="chunk_size"):
            HessianOperator(model, F.cross_entropy, batches, chunk_size=bad)
    with pytest.raises(ValueError, match="empty"):
        HessianOperator(model, F.cross_entropy, [])
    with pytest.raises(ValueError, match="batch 1 is empty"):
        HessianOperator(model, F.cross_entropy, [batches[0], (batches[0][0][:0], batches[0][1][:0])])
    with pytest.raises(ValueError, match="pair"):
        HessianOperator(model, F.cross_entropy, [batches[0][0]])
    with pytest.raises(ValueError, match="trainable"):
        HessianOperator(make_mlp().requires_grad_(False), F.cross_entropy, batches)
    op = HessianOperator(model, F.cross_entropy, batches)
    v = [torch.ones_like(p) for p in model.parameters()]
    with pytest.raises(RuntimeError, match="context manager"):
        op.matvec(v)
    with op, pytest.raises(ValueError, match="expected 4 tensors"):
        op.matvec(v[:3])


# ---------------------------------------------------------------------------------------------
# Vectors


def test_vectors_flatten_and_draw_reproducibly():
    params = [torch.zeros(2, 3), torch.zeros(4, dtype=torch.float64)]
    assert flat_dtype(params) == torch.float64
    g = gaussian(params, torch.Generator().manual_seed(0))
    assert [t.shape for t in g] == [p.shape for p in params] and [t.dtype for t in g] == [p.dtype for p in params]
    assert all(torch.equal(a, b) for a, b in zip(g, gaussian(params, torch.Generator().manual_seed(0))))
    r = rademacher(params, torch.Generator().manual_seed(1))
    assert all(set(t.unique().tolist()) <= {-1.0, 1.0} for t in r)
    x = flatten(g, torch.float64)
    assert x.shape == (10,) and x.dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(unflatten(x, params), g))
    assert dot(g, r) == pytest.approx(float(x @ flatten(r, torch.float64)))
