"""Hessian top eigenvalue and trace of the train loss (paper §2): PyHessian's algorithms, Lanczos and Hutch++.

The paper characterises the loss landscape around a trained model by the curvature of its
*train* loss: the largest eigenvalue of the Hessian (sharpness) and its trace (total curvature),
computed with PyHessian (Yao et al. 2020) on 10 batches × 64 train samples, model in eval mode,
``maxIter=100, tol=1e-3``. This module computes both without ever forming the Hessian, from
the Hessian-vector products of :mod:`phasezoo.landscape.hvp` (which defines the loss, the
model's eval mode, the regrouping of samples and the product implementations): PyHessian's
power iteration and Hutchinson estimator (the paper's), and by default Lanczos for the
eigenvalue and Hutch++ for the trace, the trace stopping once its standard error is 5 % of its
value (measured below).

Top eigenvalue: Lanczos (default) or power iteration (``method=``)
    Both give the eigenvalue of largest MAGNITUDE, with its sign: the paper's quantity, since
    PyHessian's power iteration converges to it. It is the most negative eigenvalue when the
    Hessian's negative curvature dominates (possible away from a minimum, e.g. at
    initialisation). Both start from the same seeded Gaussian vector v₀, and both stop after
    ``max_iter`` Hessian-vector products at the latest (``converged=False``).

    * ``"power"`` (PyHessian's ``eigenvalues``): λ_i = v_iᵀ H v_i, v_{i+1} = H v_i / ‖H v_i‖,
      stopping at the first i ≥ 2 with |λ_i − λ_{i−1}| / (|λ_{i−1}| + 1e-6) < tol. We return
      the newest λ_i; PyHessian returns λ_{i−1} (they differ by less than ``tol`` relatively).
      The rule only says that λ_i stopped moving: with a small eigengap it fires while λ_i
      is still further than ``tol`` from λ.
    * ``"lanczos"`` (default): implicitly restarted Lanczos, ARPACK through
      ``scipy.sparse.linalg.eigsh(LinearOperator, k=1, which="LM", tol=tol, v0=v₀, ncv=10)``
      on our products (float64 numpy in and out, products in the parameters' dtype). ARPACK
      stops when the Ritz residual ‖H x − θ x‖ ≤ tol · |θ|, which for symmetric H puts an
      eigenvalue within tol · |θ| of θ (usually far closer). It checks after ``ncv`` products
      and after each restart: 11 products at ncv 10 when the first check passes. If
      ``max_iter`` runs out first, the value is the larger-magnitude one of the largest and
      smallest Ritz values found on windows of the last ``ncv`` vectors it multiplied
      (bounds of the spectrum that only tighten).
      Memory: ARPACK's ncv + 4 float64 vectors plus ncv float32 vectors for that fallback,
      about 150 bytes per parameter at ncv 10 against about 12 for power iteration (3.5 GB
      for a 23-million-parameter ResNet-50): use ``method="power"`` where memory is tight.

Trace: Hutch++ (default) or Hutchinson (``method=``), stopping on accuracy
    Probes are Rademacher (±1) vectors from the seeded generator.

    * ``"hutchinson"`` (PyHessian's ``trace``): tr(H) = E[vᵀ H v]; the estimate is the mean
      of the probe values, its standard error SE = std(vᵀ H v) / √n (sample std, ddof 1).
    * ``"hutchpp"`` (Hutch++, Meyer, Musco, Musco & Woodruff 2021, with an adaptive residual):
      k = ``sketch_size`` (default 10) Rademacher columns S, Q = orth(H S) (k products;
      ``torch.linalg.qr`` of the flattened vectors, num_params × k in the parameters' dtype),
      the exact tr(Qᵀ H Q) (k more), then Hutchinson on the deflated operator
      (I − QQᵀ) H (I − QQᵀ): residual probes p = (I − QQᵀ) g, values pᵀ H p, one product
      each. The value is tr(Qᵀ H Q) + the residual mean and the SE that of the residual mean,
      i.e. CONDITIONAL on the sketch S. Given any S the estimate is unbiased
      (tr(Qᵀ H Q) + tr((I − QQᵀ) H (I − QQᵀ)) = tr H), so its unconditional variance is the
      average of the conditional ones, and the SE estimates the error of the run's own
      estimate; it does not say how another sketch would have split the trace. Hutch++ pays
      when a few eigenvalues carry most of ‖H‖_F², as in trained networks (the ~C outliers of
      a C-class classifier; 99–100 % of ‖H‖_F² in the top 10 eigenvalues of both models below);
      on a flat spectrum it gains little and spends 2k products on the sketch. With
      ``sketch_size=None`` k = min(10, (max_iter − min_probes) // 2, num_params) (0: plain
      Hutchinson), so small budgets still leave ``min_probes`` residual probes.

    Stopping (``rel_stderr`` and ``min_probes``, or ``tol``)
        The standard-error rule (default, ``rel_stderr=0.05, min_probes=10``) stops at the
        first n ≥ max(min_probes, 2) probes (Hutch++: residual probes) with
        SE ≤ rel_stderr · |estimate|. For Hutch++ it also stops when
        SE ≤ √eps · Σ|eig(Qᵀ H Q)|: the residual is then zero to working precision, which a
        Hessian of rank ≤ k with a trace near 0 would otherwise never satisfy (no division
        is involved either way). ``rel_stderr=0`` runs to ``max_iter`` unless the values have
        zero spread (a zero Hessian stops at ``min_probes``). ``rel_stderr=None`` is the
        previous rule, PyHessian's relative change: the first n ≥ 2 with
        |m_n − m_{n−1}| / (|m_{n−1}| + 1e-6) < tol (m_n the running estimate). **Fix over
        PyHessian:** it divides by ``(m_{n−1} + 1e-6)`` without ``abs()``, so a negative
        running mean makes the ratio negative and it stops after two probes; PyPI
        ``pyhessian`` 0.1 has that bug. We divide by the absolute value. Either rule stops
        after ``max_iter`` products in all (sketch included), with ``converged=False``.
        A sequential stop on an estimated SE is slightly optimistic: the SE of a few probes
        is itself noisy and the rule fires when it happens to be small. On the 75-parameter
        test model (200 seeds) at rel_stderr 0.15 the spread of the stopped Hutchinson
        estimates was 1.36 × their median SE (1.06 × at 0.05), Hutch++'s 1.10 × (0.95 ×); 99 %
        of seeds still lay within 3 SE. Coverage on trained models: below.

Accuracy per product, measured (``benchmarks/README.md``, ``benchmarks/results/hessian_budget.json``)
    On the dense Hessians of two trained members (digits ResNet-18, a PINN), 30 seeds each: the
    previous rule (Hutchinson, relative change 1e-3) stopped after 27–51 probes with a median
    error of 7 % and one seed in ten off by 15–23 %; Hutchinson needs ~100–300 probes for a
    5 % SE; Hutch++ with k = 10 meets the target at its minimum of 30 products with 5–7×
    smaller median errors and an SE that covers (3-SE coverage 1.00): hence
    ``DEFAULT_TRACE_METHOD = "hutchpp"``, ``DEFAULT_SKETCH_SIZE = 10``. Lanczos' rule bounds the
    eigenvalue's error (within 1e-7 on the test models, where power iteration stopped 0.3–0.4 %
    off at small eigengaps), for a few products more on easy spectra: hence
    ``DEFAULT_EIG_METHOD = "lanczos"``, ``DEFAULT_LANCZOS_NCV = 10``. The tables are in the
    benchmark's README.

Why not curvlinops' estimators
    ``curvlinops-for-pytorch`` 3.0.1 has Hutchinson, Hutch++ and XTrace
    (``hutchinson_trace``, ``hutchpp_trace``, ``xtrace``), but each takes a fixed
    ``num_matvecs`` (Hutch++: a multiple of 3, a third each for S, Q and the residual) and
    returns only the estimate: no per-probe values, hence no standard error to report or to
    stop on, and no way to continue the residual adaptively. They also draw from torch's
    global random state rather than a given generator. So the adaptive Hutch++ is written
    here (on our products); curvlinops serves only as the benchmark's optional cross-check.

Reproducibility
    Random vectors come from a CPU ``torch.Generator`` seeded with ``seed`` (see
    :mod:`phasezoo.landscape.hvp`), so the same seed gives the same probes on any device and the
    same value on the same device. Hutch++ draws its k sketch columns first, then the residual
    probes. Lanczos is deterministic given its start vector. Results do not depend on ``hvp``,
    ``chunk_size`` or ``probe_batch`` beyond floating-point noise: the probes are drawn one
    after another from the same generator whatever the batching, and batched probe values are
    processed in order, the estimate stopping at the first probe where the rule fires. Every
    estimate records its settings (``method, max_iter, tol, seed, num_samples, num_batches,
    chunk_size, num_chunks, num_params, hvp, probe_batch``; Lanczos ``ncv``; the trace
    ``probes, rel_stderr, min_probes, sketch_size``, those its rule does not use set to None),
    the number of products used (``iterations``, also ``diagnostics["products"]``), whether the
    stopping rule fired, and for the trace its standard error and, for Hutch++, the deflated and
    residual parts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh
from torch import nn

from phasezoo.landscape.hvp import (DEFAULT_CHUNK_SIZE, DEFAULT_HVP, DEFAULT_PROBE_BATCH, Batch, HessianOperator,
                                    LossFn, dot, flat_dtype, flatten, gaussian, matvecs, rademacher, unflatten)

__all__ = [
    "DEFAULT_EIG_METHOD",
    "DEFAULT_LANCZOS_NCV",
    "DEFAULT_MAX_ITER",
    "DEFAULT_MIN_PROBES",
    "DEFAULT_REL_STDERR",
    "DEFAULT_SKETCH_SIZE",
    "DEFAULT_TRACE_METHOD",
    "EIG_METHODS",
    "TRACE_METHODS",
    "HessianEstimate",
    "top_eigenvalue",
    "top_eigenvalue_of",
    "trace",
    "trace_of",
]

#: Trace estimators: Hutchinson's, and Hutch++ (Meyer et al. 2021) with an adaptive residual.
TRACE_METHODS = ("hutchinson", "hutchpp")
#: Top-eigenvalue methods: power iteration (PyHessian's) and Lanczos (ARPACK via scipy's eigsh).
EIG_METHODS = ("power", "lanczos")
#: The defaults, chosen by ``benchmarks/hessian.py --part budget`` (see the module docstring).
DEFAULT_TRACE_METHOD = "hutchpp"
DEFAULT_EIG_METHOD = "lanczos"
#: The trace stops once its standard error is at most this fraction of |estimate| ...
DEFAULT_REL_STDERR = 0.05
#: ... but never before this many probes (Hutch++: residual probes).
DEFAULT_MIN_PROBES = 10
#: Hessian-vector products at most, in all (PyHessian's maxIter).
DEFAULT_MAX_ITER = 100
#: Hutch++'s sketch size k (2k products before the residual probes).
DEFAULT_SKETCH_SIZE = 10
#: Lanczos basis size (ARPACK's ncv).
DEFAULT_LANCZOS_NCV = 10

#: Added to the denominator of the relative-change stopping rules, as in PyHessian.
_EPS = 1e-6


@dataclass(frozen=True)
class HessianEstimate:
    """One Hessian statistic with everything needed to judge and reproduce it.

    ``value``: the estimate; ``iterations``: the Hessian-vector products used (every method;
    for Hutch++ 2k sketch products plus the residual probes); ``converged``: whether the
    stopping rule fired before ``max_iter`` products; ``stderr``: the trace's standard error
    (Hutchinson: of the probe mean; Hutch++: of the residual mean, given the sketch; ``None``
    for the eigenvalue and for a trace from a single probe); ``settings``: what produced it
    (``method, max_iter, tol, seed, num_samples, num_batches, chunk_size, num_chunks,
    num_params, hvp, probe_batch``, for Lanczos ``ncv``, for the trace ``probes, rel_stderr,
    min_probes, sketch_size``; a parameter the chosen rule does not use is None: ``tol`` under
    the standard-error rule, ``rel_stderr`` and ``min_probes`` under the relative-change rule,
    ``sketch_size`` for Hutchinson; ``chunk_size`` is None when the batches were used as
    given); ``history``: the power-iteration eigenvalue after each product (empty for Lanczos),
    or each probe's value in order (Hutch++: the residual probes' gᵀ P H P g);
    ``diagnostics``: ``products``, and for the trace ``probes`` (Hutchinson or residual probes)
    and, for Hutch++, ``deflated_trace`` = tr(Qᵀ H Q) and ``residual_trace``.
    """

    value: float
    iterations: int
    converged: bool
    stderr: float | None
    settings: dict[str, Any]
    history: tuple[float, ...] = field(default=(), repr=False)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain floats, ints, bools, strings, lists)."""
        return {
            "value": self.value,
            "iterations": self.iterations,
            "converged": self.converged,
            "stderr": self.stderr,
            "settings": dict(self.settings),
            "history": list(self.history),
            "diagnostics": dict(self.diagnostics),
        }


# --------------------------------------------------------------------------------------------
# Argument checks, stopping rules, settings


def _check(max_iter: int, tol: float, probe_batch: int = 1) -> None:
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not isinstance(probe_batch, int) or probe_batch < 1:
        raise ValueError(f"probe_batch must be a positive integer, got {probe_batch!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(choices)}")


def _relative_change(new: float, old: float) -> float:
    return abs(new - old) / (abs(old) + _EPS)


class _StoppingRule:
    """Decides, probe value by probe value, whether a trace estimate may stop.

    ``rel_stderr`` not None: the standard-error rule (n ≥ max(min_probes, 2) and
    SE ≤ max(rel_stderr · |estimate|, floor)); None: the relative-change rule with ``tol``
    (n ≥ 2 and |m_n − m_{n−1}| / (|m_{n−1}| + 1e-6) < tol). The estimate is ``offset`` + the
    mean of the values (offset: Hutch++'s deflated trace, 0 for Hutchinson). Running sums use
    Welford's update in float64.
    """

    def __init__(self, rel_stderr: float | None, min_probes: int, tol: float, offset: float = 0.0,
                 floor: float = 0.0):
        self.rel_stderr, self.min_probes, self.tol = rel_stderr, max(min_probes, 2), tol
        self.offset, self.floor = offset, floor
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, value: float) -> bool:
        """Take one probe value; True if the rule fires now."""
        previous = self.offset + self.mean
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        estimate = self.offset + self.mean
        if self.rel_stderr is None:
            return self.n >= 2 and _relative_change(estimate, previous) < self.tol
        if self.n < self.min_probes:
            return False
        stderr = math.sqrt(max(self.m2, 0.0) / (self.n - 1) / self.n)
        return stderr <= max(self.rel_stderr * abs(estimate), self.floor)


def _settings(op: Any, method: str, max_iter: int, tol: float | None, seed: int,
              probe_batch: int, **extra: Any) -> dict[str, Any]:
    return {
        "method": method,
        "max_iter": max_iter,
        "tol": tol,
        "seed": seed,
        "num_samples": op.num_samples,
        "num_batches": op.num_batches,
        "chunk_size": op.chunk_size,
        "num_chunks": len(op.chunks),
        "num_params": op.num_params,
        "hvp": op.hvp,
        "probe_batch": probe_batch,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# Top eigenvalue


def top_eigenvalue(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = 1e-3,
    seed: int = 0,
    method: str = DEFAULT_EIG_METHOD,
    ncv: int = DEFAULT_LANCZOS_NCV,
    hvp: str = DEFAULT_HVP,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> HessianEstimate:
    """Largest-magnitude Hessian eigenvalue (with its sign) of the mean loss over ``batches``.

    ``method="power"``: power iteration from a seeded Gaussian start, λ_i = v_iᵀ H v_i,
    v_{i+1} = H v_i / ‖H v_i‖, stopping when |λ_i − λ_{i−1}| / (|λ_{i−1}| + 1e-6) < tol
    (PyHessian's algorithm; paper §2). ``method="lanczos"``: implicitly restarted Lanczos
    (ARPACK through ``scipy.sparse.linalg.eigsh``, ``which="LM"``, ``ncv`` basis vectors, the
    same seeded start), stopping when the Ritz residual ‖H x − θ x‖ ≤ tol · |θ|. Either stops
    after ``max_iter`` Hessian-vector products at the latest (``converged=False``); Lanczos then
    returns the Rayleigh–Ritz value on the last ``ncv`` vectors it multiplied. ``iterations`` is
    the number of products. ``hvp`` and ``chunk_size`` change the speed, not the value (beyond
    floating-point noise; :mod:`phasezoo.landscape.hvp` has their measured costs).
    """
    with HessianOperator(model, loss_fn, batches, hvp=hvp, chunk_size=chunk_size) as op:
        return top_eigenvalue_of(op, max_iter=max_iter, tol=tol, seed=seed, method=method, ncv=ncv)


def top_eigenvalue_of(op: Any, *, max_iter: int = DEFAULT_MAX_ITER, tol: float = 1e-3, seed: int = 0,
                      method: str = DEFAULT_EIG_METHOD, ncv: int = DEFAULT_LANCZOS_NCV) -> HessianEstimate:
    """:func:`top_eigenvalue` of an operator: an entered
    :class:`~phasezoo.landscape.hvp.HessianOperator`, or any object with its attributes
    (``params``, ``num_params``, ``matvec``, ``matvec_batched`` and those recorded in the
    settings; ``benchmarks/hessian.py`` passes a dense matrix this way)."""
    _check(max_iter, tol)
    _check_choice("eigenvalue method", method, EIG_METHODS)
    if not isinstance(ncv, int) or ncv < 2:
        raise ValueError(f"ncv must be an integer >= 2, got {ncv!r}")
    gen = torch.Generator().manual_seed(seed)
    v = gaussian(op.params, gen)
    if method == "power":
        value, products, converged, history = _power_iteration(op, v, max_iter, tol)
        settings = _settings(op, method, max_iter, tol, seed, 1)
    else:
        value, products, converged, history, used_ncv = _lanczos(op, v, max_iter, tol, ncv)
        settings = _settings(op, method, max_iter, tol, seed, 1, ncv=used_ncv)
    return HessianEstimate(value, products, converged, None, settings, tuple(history), {"products": products})


def _power_iteration(op: Any, v: list[torch.Tensor], max_iter: int,
                     tol: float) -> tuple[float, int, bool, list[float]]:
    norm = math.sqrt(dot(v, v))
    v = [t / norm for t in v]
    history: list[float] = []
    converged = False
    for _ in range(max_iter):
        hv = op.matvec(v)
        history.append(dot(v, hv))
        if len(history) >= 2 and _relative_change(history[-1], history[-2]) < tol:
            converged = True
            break
        norm = math.sqrt(dot(hv, hv))
        if norm == 0.0:  # H v = 0 for a random v: H is zero (almost surely)
            converged = True
            break
        v = [t / norm for t in hv]
    return history[-1], len(history), converged, history


class _BudgetSpent(Exception):
    """Raised inside ARPACK's reverse-communication loop when max_iter products are used."""


class _RitzTracker:
    """Ritz bounds from the vectors a Lanczos run multiplied, for a run cut short by max_iter.

    Keeps the last ``size`` vectors x_i (float32) and the small matrices G = XᵀX and M = XᵀHX;
    M's new row needs only the new product, since x_jᵀ H x_new = (H x_new)ᵀ x_j for symmetric
    H. Every Ritz value of H on a subspace lies in [λ_min, λ_max], so the largest and smallest
    Ritz values seen over all windows are bounds that only tighten; the value is the one of
    larger magnitude. (Before ARPACK's first restart the window is the whole Krylov space.)
    """

    def __init__(self, size: int):
        self.size = size
        self.xs: list[torch.Tensor] = []
        self.g = torch.zeros(0, 0, dtype=torch.float64)
        self.m = torch.zeros(0, 0, dtype=torch.float64)
        self.hi, self.lo = -math.inf, math.inf

    def add(self, x: torch.Tensor, hx: torch.Tensor) -> None:
        xs = [*self.xs, x.float()]
        gx = torch.tensor([float(x @ xj.double()) for xj in xs], dtype=torch.float64)
        mx = torch.tensor([float(hx @ xj.double()) for xj in xs], dtype=torch.float64)
        n = len(xs)
        g, m = torch.zeros(n, n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64)
        g[:-1, :-1], m[:-1, :-1] = self.g, self.m
        g[-1, :], g[:, -1], m[-1, :], m[:, -1] = gx, gx, mx, mx
        if n > self.size:
            xs, g, m = xs[1:], g[1:, 1:], m[1:, 1:]
        self.xs, self.g, self.m = xs, g, m
        w, u = torch.linalg.eigh(g)
        keep = w > 1e-10 * w.max()
        b = u[:, keep] / w[keep].sqrt()  # G^(-1/2) on the well-conditioned part
        theta = torch.linalg.eigvalsh(b.T @ ((m + m.T) / 2) @ b)
        self.hi, self.lo = max(self.hi, float(theta[-1])), min(self.lo, float(theta[0]))

    def value(self) -> float:
        return self.hi if abs(self.hi) >= abs(self.lo) else self.lo


def _lanczos(op: Any, v0: list[torch.Tensor], max_iter: int, tol: float,
             ncv: int) -> tuple[float, int, bool, list[float], int]:
    d = op.num_params
    ncv = min(ncv, d)
    ritz = _RitzTracker(ncv)
    count = 0
    device = op.params[0].device

    def matvec(x: np.ndarray) -> np.ndarray:
        nonlocal count
        if count >= max_iter:
            raise _BudgetSpent
        count += 1
        xt = torch.from_numpy(np.array(x, dtype=np.float64).reshape(-1))
        hx = flatten(op.matvec(unflatten(xt.to(device), op.params)), torch.float64).cpu()
        ritz.add(xt, hx)
        return hx.numpy()

    if d < 3:  # too small for ARPACK (it needs k + 1 < ncv <= d): Rayleigh-Ritz on e_1, e_2 is exact
        for i in range(min(d, max_iter)):
            matvec(np.eye(d)[i])
        return ritz.value(), count, count == d, [], ncv
    a = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    start = flatten(v0, torch.float64).cpu().numpy()
    try:
        w = eigsh(a, k=1, which="LM", tol=tol, v0=start, ncv=ncv, maxiter=max_iter, return_eigenvectors=False)
        return float(w[0]), count, True, [], ncv
    except (_BudgetSpent, ArpackNoConvergence):
        return ritz.value(), count, False, [], ncv
    except ArpackError:
        # ARPACK gives up on a zero operator ("starting vector is zero" once H v0 = 0)
        if float(ritz.m.abs().max()) == 0.0:
            return 0.0, count, True, [], ncv
        raise


# --------------------------------------------------------------------------------------------
# Trace


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = DEFAULT_MAX_ITER,
    rel_stderr: float | None = DEFAULT_REL_STDERR,
    min_probes: int = DEFAULT_MIN_PROBES,
    method: str = DEFAULT_TRACE_METHOD,
    sketch_size: int | None = None,
    tol: float = 1e-3,
    seed: int = 0,
    hvp: str = DEFAULT_HVP,
    probe_batch: int = DEFAULT_PROBE_BATCH,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> HessianEstimate:
    """Estimate tr(H) of the mean loss over ``batches`` with Rademacher probes, stopping on accuracy.

    ``method="hutchinson"``: the mean of vᵀ H v over probes v. ``method="hutchpp"`` (Hutch++,
    Meyer et al. 2021): k = ``sketch_size`` products H S give Q = orth(H S), k more give the
    exact tr(Qᵀ H Q), and Hutchinson probes of the deflated (I − QQᵀ) H (I − QQᵀ) estimate the
    rest. ``sketch_size=None``: ``DEFAULT_SKETCH_SIZE``, reduced to fit
    2k + ``min_probes`` ≤ ``max_iter`` (0: plain Hutchinson).

    Stopping: with ``rel_stderr`` (default) at the first n ≥ ``min_probes`` (Hutch++: residual
    probes) with standard error ≤ ``rel_stderr`` · |estimate|; with ``rel_stderr=None`` at the
    first n ≥ 2 where |m_n − m_{n−1}| / (|m_{n−1}| + 1e-6) < ``tol`` (the previous rule:
    PyHessian's with ``abs()`` in the denominator). At the latest after ``max_iter``
    Hessian-vector products in all (``converged=False``). ``rel_stderr=0`` runs to ``max_iter``
    (unless the values have zero spread). ``iterations`` counts the products, ``stderr`` is the
    standard error of the probe (residual) mean, conditional on the sketch for Hutch++.
    ``history`` holds the probe (residual) values in order. ``hvp``, ``probe_batch`` and
    ``chunk_size`` change the speed, not the value (beyond floating-point noise). Paper §2; the
    module docstring has the measured accuracy per product.
    """
    with HessianOperator(model, loss_fn, batches, hvp=hvp, chunk_size=chunk_size) as op:
        return trace_of(op, max_iter=max_iter, rel_stderr=rel_stderr, min_probes=min_probes, method=method,
                        sketch_size=sketch_size, tol=tol, seed=seed, probe_batch=probe_batch)


def trace_of(op: Any, *, max_iter: int = DEFAULT_MAX_ITER, rel_stderr: float | None = DEFAULT_REL_STDERR,
             min_probes: int = DEFAULT_MIN_PROBES, method: str = DEFAULT_TRACE_METHOD,
             sketch_size: int | None = None, tol: float = 1e-3, seed: int = 0,
             probe_batch: int = DEFAULT_PROBE_BATCH) -> HessianEstimate:
    """:func:`trace` of an operator (see :func:`top_eigenvalue_of`)."""
    _check(max_iter, tol, probe_batch)
    _check_choice("trace method", method, TRACE_METHODS)
    if rel_stderr is not None and not (isinstance(rel_stderr, (int, float)) and rel_stderr >= 0
                                       and math.isfinite(rel_stderr)):
        raise ValueError(f"rel_stderr must be a finite number >= 0 or None, got {rel_stderr!r}")
    if not isinstance(min_probes, int) or isinstance(min_probes, bool) or min_probes < 1:
        raise ValueError(f"min_probes must be a positive integer, got {min_probes!r}")
    if sketch_size is not None and (not isinstance(sketch_size, int) or sketch_size < 0
                                    or (method == "hutchpp" and 2 * sketch_size >= max_iter)):
        raise ValueError(f"sketch_size must be an integer >= 0 with 2 * sketch_size < max_iter, "
                         f"got {sketch_size!r}")
    gen = torch.Generator().manual_seed(seed)
    k = 0
    if method == "hutchpp":  # the default sketch leaves room for min_probes residual probes
        k = sketch_size if sketch_size is not None else \
            min(DEFAULT_SKETCH_SIZE, max(0, (max_iter - min_probes) // 2))
        k = min(k, op.num_params)
    q, deflated, floor = _sketch(op, gen, k, probe_batch) if k else (None, 0.0, 0.0)
    rule = _StoppingRule(rel_stderr, min_probes, tol, deflated, floor)
    values: list[float] = []
    budget = max_iter - 2 * k
    converged = False
    dtype = flat_dtype(op.params)
    while len(values) < budget and not converged:
        probes = [rademacher(op.params, gen) for _ in range(min(probe_batch, budget - len(values)))]
        if q is not None:  # project the probes: p = (I − QQᵀ) g, and pᵀ H p = gᵀ P H P g
            flat = torch.stack([flatten(g, dtype) for g in probes], dim=1)
            flat = flat - q @ (q.T @ flat)
            probes = [unflatten(c, op.params) for c in flat.T]
        for g, hg in zip(probes, matvecs(op, probes, probe_batch)):
            values.append(dot(g, hg))
            if rule.add(values[-1]):
                converged = True
                break
    settings = _settings(
        op, method, max_iter, tol if rel_stderr is None else None, seed, probe_batch,
        probes="rademacher", rel_stderr=rel_stderr, min_probes=None if rel_stderr is None else min_probes,
        sketch_size=k if method == "hutchpp" else None)
    n = len(values)
    diagnostics: dict[str, Any] = {"products": 2 * k + n, "probes": n}
    if method == "hutchpp":
        diagnostics["deflated_trace"] = deflated
        diagnostics["residual_trace"] = math.fsum(values) / n if n else 0.0
    stderr = statistics.stdev(values) / math.sqrt(n) if n >= 2 else None
    value = deflated + (math.fsum(values) / n if n else 0.0)
    return HessianEstimate(value, 2 * k + n, converged, stderr, settings, tuple(values), diagnostics)


def _sketch(op: Any, gen: torch.Generator, k: int,
            probe_batch: int) -> tuple[torch.Tensor, float, float]:
    """Hutch++'s deterministic part: Q = orth(H S) for k Rademacher columns S (k products),
    tr(Qᵀ H Q) (k products), and the floor of the standard-error rule:
    √eps · Σ|eig(Qᵀ H Q)| (the residual is zero to working precision below it)."""
    dtype = flat_dtype(op.params)
    s = [rademacher(op.params, gen) for _ in range(k)]
    hs = torch.stack([flatten(h, dtype) for h in matvecs(op, s, probe_batch)], dim=1)
    q, _ = torch.linalg.qr(hs)
    del hs
    cols = [unflatten(c, op.params) for c in q.T]
    hq = torch.stack([flatten(h, dtype) for h in matvecs(op, cols, probe_batch)], dim=1)
    t = (q.T.double() @ hq.double())
    del hq
    deflated = float(torch.trace(t))
    eigs = torch.linalg.eigvalsh((t + t.T) / 2)
    floor = math.sqrt(torch.finfo(dtype).eps) * float(eigs.abs().sum())
    return q, deflated, floor
