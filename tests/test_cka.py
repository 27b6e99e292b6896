"""Linear CKA: the defining invariances, closed-form values, and the zoo-level estimators."""

import math

import numpy as np
import pytest
import torch

from phasezoo.landscape.cka import cell_cka, linear_cka, output_cka


def _rand(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_identity_and_symmetry_and_range():
    x, y = _rand(50, 6, 0), _rand(50, 4, 1)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-14)
    for seed in range(5):
        v = linear_cka(_rand(30, 3, seed), _rand(30, 5, seed + 10))
        assert 0.0 <= v <= 1.0


def test_invariant_to_orthogonal_maps_isotropic_scaling_and_offsets():
    x = _rand(80, 5, 0)
    y = torch.cat([x, _rand(80, 2, 3)], dim=1) + 0.5 * _rand(80, 7, 4)  # related to x
    q, _ = torch.linalg.qr(_rand(5, 5, 5))
    ref = linear_cka(x, y)
    assert 0.05 < ref < 0.999
    assert linear_cka(x @ q, y) == pytest.approx(ref, abs=1e-12)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(ref, abs=1e-12)
    assert linear_cka(x + 100.0, y - 5.0) == pytest.approx(ref, abs=1e-10)


def test_not_invariant_to_a_general_invertible_linear_map():
    x = _rand(200, 4, 0)  # roughly isotropic columns
    a = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0],
                      [0.0, 0.0, 1.0, 0.2]], dtype=torch.float64)  # invertible (det 1), anisotropic
    assert abs(torch.linalg.det(a)) > 0.5
    assert linear_cka(x, x @ a) < 1 - 1e-3
    # and for the same x, an orthogonal map gives exactly 1
    q, _ = torch.linalg.qr(_rand(4, 4, 7))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)


def test_one_dimensional_cka_is_squared_pearson_correlation():
    """x = (1,2,3,4), y = (1,3,2,4): centred x = (-1.5,-.5,.5,1.5), centred y = (-1.5,.5,-.5,1.5);
    Σxy = 2.25-.25-.25+2.25 = 4, Σx² = Σy² = 5, so corr = 0.8 and CKA = 0.64."""
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    assert linear_cka(x, y) == pytest.approx(0.64, abs=1e-12)
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(0.64, abs=1e-12)
    # a random pair against numpy's correlation
    rng = np.random.default_rng(0)
    u = rng.normal(size=100)
    v = 0.5 * u + rng.normal(size=100)
    assert linear_cka(u, v) == pytest.approx(np.corrcoef(u, v)[0, 1] ** 2, abs=1e-12)


def test_two_dimensional_closed_form():
    """X = [[1,0],[0,1],[-1,0],[0,-1]] and Y = X·diag(1,2) are already centred.

    XᵀX = diag(2,2), ‖XᵀX‖_F = 2√2;  YᵀY = diag(2,8), ‖YᵀY‖_F = √68;  YᵀX = diag(2,4),
    ‖YᵀX‖_F² = 20.  CKA = 20 / (2√2·√68) = 5/√34 ≈ 0.8575.
    """
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = x * torch.tensor([1.0, 2.0])
    assert linear_cka(x, y) == pytest.approx(5 / math.sqrt(34), abs=1e-12)
    # the n < d Gram path gives the same value as the feature path
    wide = torch.cat([x, torch.zeros(4, 6)], dim=1)  # d = 8 > n = 4
    assert linear_cka(wide, y) == pytest.approx(5 / math.sqrt(34), abs=1e-12)


def test_gram_and_feature_forms_agree():
    x, y = _rand(10, 30, 0), _rand(10, 3, 1)  # n < d: linear_cka takes the Gram path
    xc, yc = x - x.mean(0), y - y.mean(0)
    feature_form = float(torch.linalg.norm(yc.T @ xc) ** 2
                         / (torch.linalg.norm(xc.T @ xc) * torch.linalg.norm(yc.T @ yc)))
    assert linear_cka(x, y) == pytest.approx(feature_form, abs=1e-12)


def test_errors_and_degenerate_inputs():
    with pytest.raises(ValueError, match="samples"):
        linear_cka(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        linear_cka(torch.ones(1, 2), torch.ones(1, 2))
    x = _rand(10, 3)
    assert math.isnan(linear_cka(torch.full((10, 3), 2.5), x))  # constant representation
    assert math.isnan(linear_cka(x, torch.zeros(10, 3)))
    bad = x.clone()
    bad[0, 0] = float("nan")
    assert math.isnan(linear_cka(bad, x))


def test_per_batch_with_one_batch_equals_pooled_and_differs_otherwise():
    a, b = _rand(300, 10, 0), _rand(300, 10, 1) + _rand(300, 10, 0)
    pooled = output_cka(a, b)
    assert output_cka(a, b, method="per_batch", batch_size=300) == pytest.approx(pooled, abs=1e-14)
    assert output_cka(a, b, method="per_batch", batch_size=1000) == pytest.approx(pooled, abs=1e-14)
    # per batch: the mean of the CKAs of the first num_batches consecutive batches
    manual = np.mean([linear_cka(a[i * 64:(i + 1) * 64], b[i * 64:(i + 1) * 64]) for i in range(3)])
    got = output_cka(a, b, method="per_batch", batch_size=64, num_batches=3)
    assert got == pytest.approx(manual, abs=1e-14)
    with pytest.raises(ValueError, match="method"):
        output_cka(a, b, method="mean")


def test_cell_cka_averages_all_seed_pairs():
    outs = [_rand(64, 5, s) + 2 * _rand(64, 5, 99) for s in range(3)]
    res = cell_cka(outs, labels=[10, 11, 12])
    assert set(res["pairs"]) == {"10-11", "10-12", "11-12"}
    assert res["pairs"]["10-12"] == pytest.approx(linear_cka(outs[0], outs[2]))
    assert res["cka"] == pytest.approx(np.mean(list(res["pairs"].values())))
    assert res["method"] == "pooled" and res["num_samples"] == 64 and res["num_pairs"] == 3
    assert res["num_degenerate_pairs"] == 0
    pb = cell_cka(outs, method="per_batch", batch_size=16, num_batches=2)
    assert set(pb["pairs"]) == {"0-1", "0-2", "1-2"}
    assert (pb["method"], pb["batch_size"], pb["num_batches"]) == ("per_batch", 16, 2)
    # a collapsed seed is reported, not averaged in
    res = cell_cka(outs[:2] + [torch.ones(64, 5)])
    assert res["num_degenerate_pairs"] == 2
    assert res["cka"] == pytest.approx(linear_cka(outs[0], outs[1]))
    with pytest.raises(ValueError, match="at least 2"):
        cell_cka(outs[:1])


# ----------------------------------------------------------------------------- unbiased CKA


def _hsic1_by_definition(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012), Theorem 2, as a U-statistic over ordered 4-tuples of distinct indices:
    HSIC₁ = (n)_4⁻¹ Σ_(i,j,q,r) h_ijqr with h = (1/24) Σ over the 4! orderings (t,u,v,w) of
    k_tu l_tu + k_tu l_vw − 2 k_tu l_tv. Written from the paper, independently of the closed form."""
    from itertools import permutations

    n = k.shape[0]
    total, count = 0.0, 0
    for tup in permutations(range(n), 4):
        h = 0.0
        for t, u, v, w in permutations(tup):
            h += k[t, u] * l_[t, u] + k[t, u] * l_[v, w] - 2 * k[t, u] * l_[t, v]
        total += h / 24
        count += 1
    return total / count


def test_unbiased_hsic_matches_its_u_statistic_definition():
    from phasezoo.landscape.cka import _hsic1

    x, y = _rand(7, 3, 1), _rand(7, 4, 2)
    k, l_ = x @ x.T, y @ y.T
    direct = _hsic1_by_definition(k.numpy(), l_.numpy())
    assert _hsic1(k, l_) == pytest.approx(direct, rel=1e-9, abs=1e-12)
    direct_kk = _hsic1_by_definition(k.numpy(), k.numpy())
    assert _hsic1(k, k) == pytest.approx(direct_kk, rel=1e-9)


def test_unbiased_cka_identity_invariances_and_bounds():
    x, y = _rand(40, 5, 3), _rand(40, 7, 4)
    assert linear_cka(x, x, unbiased=True) == pytest.approx(1.0, abs=1e-12)
    ref = linear_cka(x, y, unbiased=True)
    q, _ = torch.linalg.qr(_rand(5, 5, 5))
    assert linear_cka(x @ q, y, unbiased=True) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(2.5 * x + 3.0, y - 1.0, unbiased=True) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(y, x, unbiased=True) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x[:3], y[:3], unbiased=True)
    assert math.isnan(linear_cka(torch.ones(10, 3), y[:10], unbiased=True))


@pytest.mark.parametrize("dim", [10, 256, 2048])
def test_unbiased_cka_has_no_chance_floor_and_the_biased_one_does(dim):
    """Independent random 'logits' of n = 128 samples: the biased estimator's mean is far above 0
    and grows with the dimension (about d / (n + d)); the unbiased one averages 0 within a few
    standard errors."""
    n, draws = 128, 20
    g = torch.Generator().manual_seed(dim)
    biased, unbiased = [], []
    for _ in range(draws):
        a = torch.randn(n, dim, generator=g, dtype=torch.float64)
        b = torch.randn(n, dim, generator=g, dtype=torch.float64)
        biased.append(linear_cka(a, b))
        unbiased.append(linear_cka(a, b, unbiased=True))
    u = torch.tensor(unbiased)
    se = float(u.std()) / math.sqrt(draws)
    assert abs(float(u.mean())) < 4 * se + 1e-3
    assert float(torch.tensor(biased).mean()) > 0.5 * dim / (n + dim)
    if dim >= 256:
        assert float(torch.tensor(biased).mean()) > 0.5  # the floor the issue measured (0.67 at 256)


def test_unbiased_cka_still_sees_shared_signal():
    """A shared low-dimensional signal under independent noise: the unbiased value is clearly
    above its chance level of 0."""
    g = torch.Generator().manual_seed(11)
    z = torch.randn(128, 3, generator=g, dtype=torch.float64)
    a = z @ torch.randn(3, 50, generator=g, dtype=torch.float64) + 0.5 * torch.randn(128, 50, generator=g, dtype=torch.float64)
    b = z @ torch.randn(3, 50, generator=g, dtype=torch.float64) + 0.5 * torch.randn(128, 50, generator=g, dtype=torch.float64)
    assert linear_cka(a, b, unbiased=True) > 0.3
