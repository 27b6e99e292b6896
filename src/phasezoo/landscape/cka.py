"""Linear CKA between the output logits of models (paper §2; Kornblith et al. 2019).

Centered Kernel Alignment with a linear kernel compares two representations ``X`` (n×d1) and
``Y`` (n×d2) of the same ``n`` samples (rows are samples). With ``Xᶜ``, ``Yᶜ`` the
column-centred matrices and the biased HSIC estimator (Kornblith et al. 2019, eq. 4–5)::

    HSIC(K, L) ∝ tr(K H L H),   K = X Xᵀ,  L = Y Yᵀ,  H = I − 11ᵀ/n

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))
              = ‖Yᶜᵀ Xᶜ‖_F² / (‖Xᶜᵀ Xᶜ‖_F · ‖Yᶜᵀ Yᶜ‖_F)

(the ``1/(n−1)²`` factors cancel). Linear CKA lies in [0, 1], is symmetric, and is invariant to
orthogonal transforms and isotropic scaling of either representation and to adding a constant
(centring), but not to general invertible linear maps. For 1-D representations it equals the
squared Pearson correlation.

**Degenerate representations.** If a representation is constant over the samples (all its
centred columns vanish: e.g. a collapsed model that outputs the same logits for every input)
or contains non-finite values (a diverged model), CKA is undefined (0/0) and
:func:`linear_cka` returns ``nan`` rather than an arbitrary number. Averages over seed pairs
(:func:`cell_cka`) and over batches (``per_batch``) skip ``nan`` values and report how many were
skipped; an average with nothing left to average is ``nan``.

**Zoo level** (paper §2). The CKA of a grid cell is the mean over all seed pairs of the CKA of
their logits on one fixed set of samples. Two estimators are offered and the one used is
recorded beside the value:

* ``pooled``: the CKA of the logits on all samples at once (the statistically cleaner one);
* ``per_batch``: the authors' way (PhaseTransitionModelZoo): CKA on consecutive batches of
  ``batch_size=128`` samples, averaged over the first ``num_batches=10`` batches. The batch
  estimate is biased towards larger values for small batches, so the two are not
  interchangeable; with ``batch_size >= n`` they coincide.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

METHODS = ("pooled", "per_batch")

# A centred representation whose norm is below this fraction of its uncentred norm is treated as
# constant: centring a constant column in floating point leaves rounding residue (~1e-16
# relative), which would otherwise produce an arbitrary CKA.
_CONSTANT_RTOL = 1e-10


def _as_matrix(a: ArrayLike, name: str) -> torch.Tensor:
    """``a`` as a float64 tensor of shape (n, d); 1-D becomes a column, >2-D is flattened."""
    t = torch.as_tensor(a).detach()
    if t.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (samples), got a scalar")
    t = t.to(torch.float64)
    if t.ndim == 1:
        return t[:, None]
    return t.reshape(t.shape[0], -1)


def _centre(a: torch.Tensor) -> torch.Tensor | None:
    """Column-centred ``a``, or None when ``a`` is constant over the samples or not finite."""
    if not bool(torch.isfinite(a).all()):
        return None
    ac = a - a.mean(dim=0, keepdim=True)
    scale = float(torch.linalg.norm(a))
    if float(torch.linalg.norm(ac)) <= _CONSTANT_RTOL * scale or scale == 0.0:
        return None
    return ac


def linear_cka(X: ArrayLike, Y: ArrayLike, unbiased: bool = False) -> float:
    """Linear CKA of two representations of the same ``n`` samples (Kornblith et al. 2019).

    ``unbiased=False`` (the paper's estimator): ``CKA = ‖Yᶜᵀ Xᶜ‖_F² / (‖Xᶜᵀ Xᶜ‖_F · ‖Yᶜᵀ Yᶜ‖_F)``
    with column-centred ``Xᶜ``, ``Yᶜ`` (biased HSIC), clipped to [0, 1]. When ``n`` is smaller
    than the feature dimensions the equivalent Gram-matrix form ``⟨Kᶜ, Lᶜ⟩_F / (‖Kᶜ‖_F ‖Lᶜ‖_F)``
    is used instead. Its value for *independent* representations is far from 0 when the
    feature dimension is not small against ``n`` (chance floor: about d/(n + d) for isotropic
    features), so a fixed threshold means something different for 10 logits and for 50k.

    ``unbiased=True``: the same ratio built from the unbiased HSIC estimator of Song et al.
    (2012), as Nguyen, Raghu and Kornblith (2021) use for CKA: with ``K = XXᵀ``, ``L = YYᵀ`` and
    their diagonals set to zero (``K̃``, ``L̃``)::

        HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))

        CKA₁(X, Y) = HSIC₁(K, L) / sqrt(HSIC₁(K, K) · HSIC₁(L, L))

    Its expectation for independent representations is 0 (it can be negative; it is not
    clipped), so it has no chance floor. Needs ``n ≥ 4``. (HSIC₁ is invariant to centring, so
    the centred features are used for numerical accuracy.)

    Computed in float64 (torch tensors or numpy arrays; 1-D inputs are columns, more dimensions
    are flattened per sample). Returns ``nan`` when either representation is constant over the
    samples or non-finite, or (unbiased) when an HSIC₁(K, K) is not positive (CKA is 0/0 there;
    see the module docstring). Raises ``ValueError`` if the row counts differ or ``n`` is too
    small.
    """
    x = _as_matrix(X, "X")
    y = _as_matrix(Y, "Y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"X has {n} samples (rows) but Y has {y.shape[0]}")
    if n < (4 if unbiased else 2):
        raise ValueError(f"{'unbiased ' if unbiased else ''}linear CKA needs at least "
                         f"{4 if unbiased else 2} samples, got {n}")
    y = y.to(x.device)
    xc, yc = _centre(x), _centre(y)
    if xc is None or yc is None:
        return math.nan
    if unbiased:
        k, l_ = xc @ xc.T, yc @ yc.T
        hxy, hxx, hyy = _hsic1(k, l_), _hsic1(k, k), _hsic1(l_, l_)
        if not (hxx > 0 and hyy > 0):
            return math.nan
        return hxy / math.sqrt(hxx * hyy)
    if n < max(x.shape[1], y.shape[1]):  # Gram form: n×n instead of d×d
        k, l_ = xc @ xc.T, yc @ yc.T
        cross = (k * l_).sum()
        norm_x, norm_y = torch.linalg.norm(k), torch.linalg.norm(l_)
    else:
        cross = torch.linalg.norm(yc.T @ xc) ** 2
        norm_x, norm_y = torch.linalg.norm(xc.T @ xc), torch.linalg.norm(yc.T @ yc)
    value = float(cross / (norm_x * norm_y))
    return min(max(value, 0.0), 1.0)  # clip rounding excursions outside [0, 1]


def _hsic1(k: torch.Tensor, l_: torch.Tensor) -> float:
    """Song et al.'s (2012) unbiased HSIC estimator of two n×n Gram matrices (see linear_cka)."""
    n = k.shape[0]
    kt = k - torch.diag_embed(torch.diagonal(k))
    lt = l_ - torch.diag_embed(torch.diagonal(l_))
    ones_k, ones_l = kt.sum(dim=0), lt.sum(dim=0)  # 1ᵀK̃ and 1ᵀL̃ (both symmetric)
    trace = (kt * lt).sum()  # tr(K̃L̃) for symmetric matrices
    value = trace + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (ones_k @ ones_l)
    return float(value / (n * (n - 3)))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _check_method(method: str, batch_size: int, num_batches: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    for name, v in (("batch_size", batch_size), ("num_batches", num_batches)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def output_cka(
    out_a: ArrayLike,
    out_b: ArrayLike,
    *,
    method: str = "pooled",
    batch_size: int = 128,
    num_batches: int = 10,
) -> float:
    """Linear CKA between two models' outputs on the same samples (rows in the same order).

    ``pooled``: :func:`linear_cka` on all rows. ``per_batch`` (PTMZ): the mean of
    :func:`linear_cka` over the first ``num_batches`` consecutive batches of ``batch_size`` rows;
    a trailing partial batch counts if it has at least 2 rows, and degenerate (``nan``) batches
    are skipped. With ``batch_size >= n`` both estimators agree.
    """
    _check_method(method, batch_size, num_batches)
    a = _as_matrix(out_a, "out_a")
    b = _as_matrix(out_b, "out_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"out_a has {a.shape[0]} samples (rows) but out_b has {b.shape[0]}")
    if method == "pooled":
        return linear_cka(a, b)
    values = []
    for i in range(num_batches):
        start = i * batch_size
        stop = min(start + batch_size, a.shape[0])
        if stop - start < 2:
            break
        values.append(linear_cka(a[start:stop], b[start:stop]))
    if not values:
        raise ValueError(f"per_batch CKA needs at least 2 samples, got {a.shape[0]}")
    return _nanmean(values)


def cell_cka(
    outputs: Sequence[ArrayLike],
    *,
    method: str = "pooled",
    batch_size: int = 128,
    num_batches: int = 10,
    labels: Sequence[object] | None = None,
) -> dict:
    """CKA of a grid cell: the mean over all pairs ``i < j`` of :func:`output_cka`.

    ``outputs`` are the logits of the cell's seeds on one fixed set of samples (same rows, same
    order; e.g. from :func:`phasezoo.models.utils.batched_outputs`). Pairs are named ``"i-j"`` by their positions, or by
    ``labels[i]-labels[j]`` (e.g. the seeds) when ``labels`` is given. Degenerate pairs (``nan``,
    see the module docstring) are left out of the mean and counted.

    Returns ``{"cka", "pairs", "method", "num_samples", "batch_size", "num_batches",
    "num_pairs", "num_degenerate_pairs", "estimator"}``; ``batch_size``/``num_batches`` are
    ``None`` for ``pooled``, for which they play no part.
    """
    _check_method(method, batch_size, num_batches)
    if len(outputs) < 2:
        raise ValueError(f"cell CKA needs the outputs of at least 2 models, got {len(outputs)}")
    if labels is None:
        labels = list(range(len(outputs)))
    if len(labels) != len(outputs):
        raise ValueError(f"{len(labels)} labels for {len(outputs)} outputs")
    mats = [_as_matrix(o, f"outputs[{i}]") for i, o in enumerate(outputs)]
    n = mats[0].shape[0]
    for i, m in enumerate(mats):
        if m.shape[0] != n:
            raise ValueError(f"outputs[{i}] has {m.shape[0]} samples but outputs[0] has {n}")
    pairs: dict[str, float] = {}
    for i, j in combinations(range(len(mats)), 2):
        pairs[f"{labels[i]}-{labels[j]}"] = output_cka(
            mats[i], mats[j], method=method, batch_size=batch_size, num_batches=num_batches
        )
    values = list(pairs.values())
    per_batch = method == "per_batch"
    return {
        "cka": _nanmean(values),
        "pairs": pairs,
        "method": method,
        "num_samples": n,
        "batch_size": batch_size if per_batch else None,
        "num_batches": num_batches if per_batch else None,
        "num_pairs": len(values),
        "num_degenerate_pairs": sum(math.isnan(v) for v in values),
        "estimator": "linear CKA, biased HSIC (Kornblith et al. 2019)",
    }


__all__ = ["METHODS", "cell_cka", "linear_cka", "output_cka"]
