"""Hessian top eigenvalue and trace of the train loss (paper §2), with PyHessian's algorithms.

The paper characterises the loss landscape around a trained model by the curvature of its
*train* loss: the largest eigenvalue of the Hessian (sharpness) and its trace (total curvature),
computed with PyHessian (Yao et al. 2020) on 10 batches × 64 train samples, model in eval mode,
``maxIter=100, tol=1e-3``. This module computes both without ever forming the Hessian, from
Hessian-vector products (HVPs) only.

The loss
    ``batches`` is a list of ``(inputs, targets)`` pairs and ``loss_fn(outputs, targets)`` the
    mean loss of one batch (or a task's ``batch_loss(forward, x, y)``, which the PDE task needs
    because its residual differentiates the outputs with respect to the inputs; see
    :func:`phasezoo.tasks.as_batch_loss`). The loss is the mean over ALL given samples,

        L(θ) = Σ_b (n_b / N) · L_b(θ),    N = Σ_b n_b,

    so batches of unequal size are weighted by their size (this is the Hessian of the loss of
    the concatenated data), and ``H v = Σ_b (n_b / N) H_b v``. θ is every parameter with
    ``requires_grad=True``; a parameter the loss does not reach has a zero row and column. The
    model is put in eval mode (BatchNorm uses its running statistics, dropout is off) and every
    module's previous mode is restored afterwards, also on exceptions. Parameters' ``.grad`` are
    never touched.

Top eigenvalue: power iteration (PyHessian's ``eigenvalues``)
    v₀ ~ N(0, I) normalised (from ``seed``); repeat  λ_i = v_iᵀ H v_i,  v_{i+1} = H v_i / ‖H v_i‖,
    and stop at the first i ≥ 2 with |λ_i − λ_{i−1}| / (|λ_{i−1}| + 1e-6) < tol, or after
    ``max_iter`` products. Power iteration converges to the eigenvalue of largest MAGNITUDE, which
    is the most negative one when the Hessian's negative curvature dominates (possible away from
    a minimum, e.g. at initialisation): the value returned is that signed eigenvalue. We return
    the newest λ_i; PyHessian returns λ_{i−1} on convergence (they differ by less than ``tol``
    relatively).

Trace: Hutchinson's estimator (PyHessian's ``trace``)
    tr(H) = E[vᵀ H v] for v with i.i.d. Rademacher (±1) entries; the estimate is the mean of
    the probe values vᵀ H v. Stop at the first n ≥ 2 with
    |m_n − m_{n−1}| / (|m_{n−1}| + 1e-6) < tol (m_n the running mean of n probes), or after
    ``max_iter`` probes. **Fix over PyHessian:** PyHessian divides by ``(m_{n−1} + 1e-6)``
    without ``abs()``, so a negative running mean makes the ratio negative and it stops after two
    probes; PyPI ``pyhessian`` 0.1 has that bug. We divide by the absolute value. The standard
    error std(vᵀHv) / √n (sample std, ddof = 1) is reported beside the value: the stopping
    rule only says that the running mean stopped moving, not that it is accurate.

Regrouping samples (``chunk_size=``)
    In eval mode the samples of a batch do not interact and ``loss_fn`` is a per-sample mean, so
    L is also the size-weighted mean over ANY regrouping of the samples. The products therefore
    concatenate the batches and re-cut them into the fewest near-equal chunks of at most
    ``chunk_size`` (default 1024) samples: for the paper's 10 × 64 samples, one pass over 640
    instead of ten over 64. Small models are dominated by per-operation overhead, so this alone
    makes the products 2.6–3.6× faster (table below). ``chunk_size=None`` keeps the batches as
    given: pass it if ``loss_fn`` is not a mean of per-sample losses (e.g. a token mean over
    batches with different numbers of tokens) or the model mixes samples in eval mode. The
    batches are also kept automatically when they cannot be concatenated (ragged shapes) or a
    BatchNorm without running statistics normalises with batch statistics even in eval mode.
    Peak memory is that of the double-backward graph of one chunk (of all chunks for
    ``"double_backward_cached"``).

Hessian-vector products (``hvp=``), measured
    ``benchmarks/hessian.py`` (``benchmarks/results/hessian.json``): the trained digits ResNet-18
    of width 8 (176 258 parameters), 10 batches × 64 train samples, CPU, 2 threads (a shared
    machine, load average 0.9 at the start; expect ±20 % noise between runs). Median seconds of
    ONE product H v over all 640 samples, regrouped into one chunk / the 10 batches as given:

    =============================  ================  ===============
    implementation                 one chunk of 640  10 batches × 64
    =============================  ================  ===============
    ``double_backward_cached``     0.070 (default)   0.186
    ``double_backward``            0.101             0.279
    ``forward_over_reverse``       0.174             0.633
    pyhessian 0.1                  ..                0.468
    =============================  ================  ===============

    * ``"double_backward"``: g = ∂L_c/∂θ with ``create_graph=True``, then
      H_c v = ∂(g·v)/∂θ = ``torch.autograd.grad(g, θ, grad_outputs=v)``: a forward, a backward
      and a double backward per chunk and product (PyHessian's way, per batch).
    * ``"double_backward_cached"`` (default): the gradient graphs are built once per call and
      kept (``retain_graph=True``), so a product is only the double backward. Fastest for single
      products, which is all power iteration can use. Costs the memory of every chunk's graph
      for the duration of the call; ``"double_backward"`` with a small ``chunk_size`` is the
      low-memory choice.
    * ``"forward_over_reverse"``: ``torch.func.jvp(torch.func.grad(f), (θ,), (v,))`` with
      ``torch.func.functional_call`` (buffers such as BatchNorm's running statistics passed as
      constants; dropout is off in eval mode). Its first use imports ``torch._dynamo`` (seconds).
    * Batched probes (``probe_batch=k``, trace only): k Rademacher probes in one product, via
      ``is_grads_batched=True`` (vmap over the double backward) or ``torch.func.vmap`` over the
      jvp. Seconds per probe, one chunk, k = 2 / 4 / 8 / 16: cached 0.075 / 0.079 / 0.071 /
      0.078; double backward 0.084 / 0.080 / 0.080 / 0.084; forward-over-reverse 0.120 / 0.088 /
      0.085 / 0.096. None beats a single cached product (0.070) on this CPU, and batching costs
      k tangents of memory and up to k − 1 probes computed past the stopping point: hence
      ``DEFAULT_PROBE_BATCH = 1``. Batching pays where per-operation overhead dominates (10
      batches × 64, forward-over-reverse: 0.633 s single, 0.154 s per probe at k = 16); try
      k = 8–16 on a GPU (not measured here).

    Against pyhessian 0.1 on the same model, data and settings (maxIter 100, tol 1e-3) the
    defaults were 4.8× faster for the top eigenvalue, 4.4× for the trace and 5.0× for a
    100-probe trace, with the same values (same start vector and probes on the CPU, see
    below; eigenvalue 7.9195 vs pyhessian's 7.9128, which is our previous iterate to 2e-6).
    Results do not depend on ``hvp``, ``chunk_size`` or ``probe_batch`` beyond floating-point
    noise: the probes are drawn one after another from the same generator whatever the
    batching, and batched probe values are processed in order, the estimate stopping at the
    first probe where the rule fires.

Reproducibility
    Random vectors come from a CPU ``torch.Generator`` seeded with ``seed`` and are moved to the
    parameters' device, so the same seed gives the same probes on any device and the same value
    on the same device. (On the CPU they are even PyHessian's vectors for the same
    ``torch.manual_seed``: both draw ``randn`` / ``randint(0, 2)`` per parameter in order.) Every
    estimate records its settings (``max_iter, tol, seed, num_samples, num_batches, chunk_size,
    num_chunks, num_params, method, hvp, probe_batch``), the number of products or probes used,
    whether the stopping rule fired, and for the trace its standard error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from phasezoo.tasks import as_batch_loss

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_HVP",
    "DEFAULT_PROBE_BATCH",
    "HVP_IMPLEMENTATIONS",
    "HessianEstimate",
    "HessianOperator",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "top_eigenvalue",
    "trace",
]

#: The Hessian-vector product implementations (see the module docstring for their costs).
HVP_IMPLEMENTATIONS = ("double_backward_cached", "double_backward", "forward_over_reverse")
#: The fastest one measured by ``benchmarks/hessian.py``.
DEFAULT_HVP = "double_backward_cached"
#: Samples per forward pass in the products (the batches are regrouped; see HessianOperator).
DEFAULT_CHUNK_SIZE = 1024
#: Rademacher probes per batched product in :func:`trace` (measured trade-off, see above).
DEFAULT_PROBE_BATCH = 1

#: Added to the denominator of the relative-change stopping rules, as in PyHessian.
_EPS = 1e-6

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HessianEstimate:
    """One Hessian statistic with everything needed to judge and reproduce it.

    ``value``: the estimate; ``iterations``: Hessian-vector products (power iteration) or probes
    (Hutchinson) used; ``converged``: whether the stopping rule fired before ``max_iter``;
    ``stderr``: standard error of the Hutchinson mean (``None`` for the eigenvalue, and for a
    trace from a single probe); ``settings``: ``max_iter, tol, seed, num_samples, num_batches,
    chunk_size, num_chunks, num_params, method, hvp, probe_batch`` (``chunk_size`` is None when
    the batches were used as given); ``history``: the eigenvalue after each iteration, or each
    probe's value vᵀHv.
    """

    value: float
    iterations: int
    converged: bool
    stderr: float | None
    settings: dict[str, Any]
    history: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain floats, ints, bools, strings, lists)."""
        return {
            "value": self.value,
            "iterations": self.iterations,
            "converged": self.converged,
            "stderr": self.stderr,
            "settings": dict(self.settings),
            "history": list(self.history),
        }


# --------------------------------------------------------------------------------------------
# Hessian-vector products


class HessianOperator:
    """v ↦ H v for the size-weighted mean loss over ``batches``; use it as a context manager.

    Inside ``with HessianOperator(model, loss_fn, batches) as op:`` the model is in eval mode
    (every module's mode is restored on exit) and ``op.matvec(v)`` returns H v for ``v`` a
    sequence of tensors shaped like ``op.params``; ``op.matvec_batched(V)`` does the same for
    tensors with a leading probe dimension k (``V[j]`` of shape ``(k, *params[j].shape)``).
    The batches are moved to the parameters' device once and, unless ``chunk_size`` is None,
    regrouped into ``op.chunks`` (see the module docstring; ``op.chunk_size`` is None when they
    were kept as given). With ``hvp="double_backward_cached"`` the gradient graphs are built on
    the first product and freed on exit.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Sequence[Batch],
        *,
        hvp: str = DEFAULT_HVP,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    ):
        if hvp not in HVP_IMPLEMENTATIONS:
            raise ValueError(f"unknown hvp implementation {hvp!r}; known: {', '.join(HVP_IMPLEMENTATIONS)}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        batches = list(batches)
        if not batches:
            raise ValueError("batches is empty: need at least one (inputs, targets) pair")
        self.model = model
        self.loss_fn = loss_fn
        self.batch_loss = as_batch_loss(loss_fn)
        self.hvp = hvp
        self.names = tuple(n for n, _ in named)
        self.params = tuple(p for _, p in named)
        device = self.params[0].device
        given: list[Batch] = []
        for i, b in enumerate(batches):
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise ValueError(f"batch {i} is not an (inputs, targets) pair")
            x, y = b
            if len(x) == 0:
                raise ValueError(f"batch {i} is empty")
            given.append((x.to(device), y.to(device)))
        self.num_samples = sum(len(x) for x, _ in given)
        self.num_batches = len(given)
        self.num_params = sum(p.numel() for p in self.params)
        #: The pieces the products run on: the given batches, or the samples regrouped into chunks.
        chunks = _regroup(given, chunk_size) if chunk_size is not None and _samples_independent(model) else None
        self.chunks = given if chunks is None else chunks
        #: The chunk size in effect; None when the products run on the batches as given.
        self.chunk_size = None if chunks is None else chunk_size
        self.weights = [len(x) / self.num_samples for x, _ in self.chunks]
        self._graphs: list[tuple[torch.Tensor | None, ...]] | None = None
        self._modes: list[tuple[nn.Module, bool]] | None = None
        self._func: Any = None

    # -- context: eval mode in, previous modes and no cached graphs out

    def __enter__(self) -> HessianOperator:
        self._modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self

    def __exit__(self, *exc: object) -> None:
        self._graphs = None
        self._func = None
        for m, mode in self._modes or ():
            m.training = mode
        self._modes = None

    # -- products

    def matvec(self, v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """H v, one tensor per parameter."""
        return self._product(v, batched=False)

    def matvec_batched(self, v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """H v_i for k vectors at once; each tensor has a leading dimension k."""
        return self._product(v, batched=True)

    def _product(self, v: Sequence[torch.Tensor], *, batched: bool) -> list[torch.Tensor]:
        if self._modes is None:
            raise RuntimeError("use HessianOperator as a context manager: `with HessianOperator(...) as op:`")
        v = list(v)
        if len(v) != len(self.params):
            raise ValueError(f"expected {len(self.params)} tensors, got {len(v)}")
        # Second derivatives: the fused attention kernels (flash, memory-efficient) have no
        # double backward, so products run on scaled_dot_product_attention's math backend.
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            if self.hvp == "forward_over_reverse":
                return self._forward_over_reverse(v, batched)
            return self._double_backward(v, batched)

    def _chunk_gradient(self, b: int) -> tuple[torch.Tensor | None, ...]:
        """(n_b/N) ∂L_b/∂θ with its graph kept for a second differentiation (None if unused)."""
        x, y = self.chunks[b]
        loss = self.batch_loss(self.model, x, y) * self.weights[b]
        return torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)

    def _double_backward(self, v: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        cached = self.hvp == "double_backward_cached"
        if cached and self._graphs is None:
            self._graphs = [self._chunk_gradient(b) for b in range(len(self.chunks))]
        out = [torch.zeros_like(t) for t in v]
        for b in range(len(self.chunks)):
            grads = self._graphs[b] if cached else self._chunk_gradient(b)  # type: ignore[index]
            # A gradient that is None (parameter unused) or constant (loss linear in it) adds
            # nothing to H v; autograd refuses outputs that do not require grad, so drop them.
            pairs = [(g, t) for g, t in zip(grads, v) if g is not None and g.requires_grad]
            if not pairs:
                continue
            hv = torch.autograd.grad(
                [g for g, _ in pairs],
                self.params,
                grad_outputs=[t for _, t in pairs],
                retain_graph=cached,
                allow_unused=True,
                is_grads_batched=batched,
            )
            for acc, h in zip(out, hv):
                if h is not None:
                    acc.add_(h)
        return out

    def _forward_over_reverse(self, v: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        from torch.func import functional_call, grad, jvp, vmap

        if self._func is None:
            trainable = set(self.names)
            # Frozen parameters and buffers (BatchNorm running statistics) enter as constants.
            constants = {n: p.detach() for n, p in self.model.named_parameters() if n not in trainable}
            constants.update(dict(self.model.named_buffers()))
            model, batch_loss = self.model, self.batch_loss

            def weighted_loss(theta: dict, x: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
                forward = lambda inp: functional_call(model, (theta, constants), (inp,))  # noqa: E731
                return batch_loss(forward, x, y) * w

            grad_loss = grad(weighted_loss)

            def hvp_one(theta: dict, tangent: dict, x: torch.Tensor, y: torch.Tensor, w: float) -> dict:
                return jvp(lambda t: grad_loss(t, x, y, w), (theta,), (tangent,))[1]

            theta = {n: p.detach() for n, p in zip(self.names, self.params)}
            self._func = (theta, hvp_one, vmap(hvp_one, in_dims=(None, 0, None, None, None)))
        theta, hvp_one, hvp_many = self._func
        tangent = dict(zip(self.names, v))
        f = hvp_many if batched else hvp_one
        out = [torch.zeros_like(t) for t in v]
        for (x, y), w in zip(self.chunks, self.weights):
            hv = f(theta, tangent, x, y, w)
            for acc, n in zip(out, self.names):
                acc.add_(hv[n])
        return out


def _samples_independent(model: nn.Module) -> bool:
    """False if a module mixes samples even in eval mode (BatchNorm without running statistics
    normalises with the statistics of whatever batch it sees), so regrouping would change L."""
    return not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is None for m in model.modules()
    )


def _regroup(batches: list[Batch], chunk_size: int) -> list[Batch] | None:
    """All samples concatenated in order and cut into the fewest near-equal chunks of at most
    ``chunk_size`` samples (the batches themselves if they already are such a split); None if
    they cannot be concatenated (ragged shapes, non-tensor inputs)."""
    n = sum(len(x) for x, _ in batches)
    pieces = -(-n // chunk_size)
    if pieces == len(batches) and all(len(x) <= chunk_size for x, _ in batches):
        return batches
    try:
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
    except (TypeError, RuntimeError):
        return None
    return list(zip(x.tensor_split(pieces), y.tensor_split(pieces)))


# --------------------------------------------------------------------------------------------
# Vectors as lists of per-parameter tensors


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Σ_j ⟨a_j, b_j⟩ accumulated in float64."""
    return float(sum(torch.sum(x.double() * y.double()) for x, y in zip(a, b)))


def _dot_batched(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> list[float]:
    """Per-probe Σ_j ⟨a_j[i], b_j[i]⟩ for tensors with a leading probe dimension."""
    total = sum((x.double() * y.double()).flatten(1).sum(1) for x, y in zip(a, b))
    return [float(t) for t in total]  # type: ignore[union-attr]


def _gaussian(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]


def _rademacher(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [
        (torch.randint(0, 2, p.shape, generator=gen, dtype=p.dtype) * 2 - 1).to(p.device) for p in params
    ]


def _check(max_iter: int, tol: float, probe_batch: int = 1) -> None:
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not isinstance(probe_batch, int) or probe_batch < 1:
        raise ValueError(f"probe_batch must be a positive integer, got {probe_batch!r}")


def _relative_change(new: float, old: float) -> float:
    return abs(new - old) / (abs(old) + _EPS)


def _settings(op: HessianOperator, method: str, max_iter: int, tol: float, seed: int,
              probe_batch: int) -> dict[str, Any]:
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
    }


# --------------------------------------------------------------------------------------------
# The two statistics


def top_eigenvalue(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    hvp: str = DEFAULT_HVP,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> HessianEstimate:
    """Largest-magnitude Hessian eigenvalue of the mean loss over ``batches``, by power iteration.

    λ_i = v_iᵀ H v_i with v_{i+1} = H v_i / ‖H v_i‖ from a seeded Gaussian start; stops when
    |λ_i − λ_{i−1}| / (|λ_{i−1}| + 1e-6) < tol or after ``max_iter`` products (PyHessian's
    algorithm; paper §2). The result is the eigenvalue of largest magnitude, with its sign (see
    the module docstring). ``hvp`` picks the Hessian-vector product implementation and
    ``chunk_size`` how samples are regrouped for it; neither changes the value beyond
    floating-point noise.
    """
    _check(max_iter, tol)
    with HessianOperator(model, loss_fn, batches, hvp=hvp, chunk_size=chunk_size) as op:
        gen = torch.Generator().manual_seed(seed)
        v = _gaussian(op.params, gen)
        norm = math.sqrt(_dot(v, v))
        v = [t / norm for t in v]
        history: list[float] = []
        converged = False
        for _ in range(max_iter):
            hv = op.matvec(v)
            history.append(_dot(v, hv))
            if len(history) >= 2 and _relative_change(history[-1], history[-2]) < tol:
                converged = True
                break
            norm = math.sqrt(_dot(hv, hv))
            if norm == 0.0:  # H v = 0 for a random v: H is zero (almost surely)
                converged = True
                break
            v = [t / norm for t in hv]
        settings = _settings(op, "power_iteration", max_iter, tol, seed, 1)
    return HessianEstimate(history[-1], len(history), converged, None, settings, tuple(history))


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    hvp: str = DEFAULT_HVP,
    probe_batch: int = DEFAULT_PROBE_BATCH,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> HessianEstimate:
    """Hutchinson estimate of tr(H) = E[vᵀ H v], v Rademacher, of the mean loss over ``batches``.

    Probes are drawn one after another from a generator seeded with ``seed`` and evaluated
    ``probe_batch`` at a time; their values are then taken in order and the estimate stops at the
    first probe n ≥ 2 where |m_n − m_{n−1}| / (|m_{n−1}| + 1e-6) < tol (m_n the mean of the first
    n values), or at ``max_iter`` probes. Unlike PyHessian (no ``abs()`` in the denominator,
    hence a premature stop whenever the running mean is negative) the rule is symmetric in the
    sign of the trace. ``stderr`` = sample std of the n probe values / √n. ``hvp``,
    ``probe_batch`` and ``chunk_size`` change the speed, not the value (beyond floating-point
    noise). Paper §2.
    """
    _check(max_iter, tol, probe_batch)
    with HessianOperator(model, loss_fn, batches, hvp=hvp, chunk_size=chunk_size) as op:
        gen = torch.Generator().manual_seed(seed)
        values: list[float] = []
        converged = False
        while len(values) < max_iter and not converged:
            k = min(probe_batch, max_iter - len(values))
            probes = [_rademacher(op.params, gen) for _ in range(k)]
            if k == 1:
                chunk = [_dot(probes[0], op.matvec(probes[0]))]
            else:
                stacked = [torch.stack(ts) for ts in zip(*probes)]
                chunk = _dot_batched(stacked, op.matvec_batched(stacked))
            for value in chunk:
                previous = math.fsum(values) / len(values) if values else None
                values.append(value)
                if previous is not None and _relative_change(math.fsum(values) / len(values), previous) < tol:
                    converged = True
                    break
        settings = _settings(op, "hutchinson_rademacher", max_iter, tol, seed, probe_batch)
    n = len(values)
    stderr = statistics.stdev(values) / math.sqrt(n) if n >= 2 else None
    return HessianEstimate(math.fsum(values) / n, n, converged, stderr, settings, tuple(values))


def hessian_top_eigenvalue(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    hvp: str = DEFAULT_HVP,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> float:
    """The value of :func:`top_eigenvalue` (largest-magnitude eigenvalue, power iteration)."""
    return top_eigenvalue(model, loss_fn, batches, max_iter=max_iter, tol=tol, seed=seed, hvp=hvp,
                          chunk_size=chunk_size).value


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    hvp: str = DEFAULT_HVP,
    probe_batch: int = DEFAULT_PROBE_BATCH,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
) -> float:
    """The value of :func:`trace` (Hutchinson estimate of tr(H), Rademacher probes)."""
    return trace(model, loss_fn, batches, max_iter=max_iter, tol=tol, seed=seed, hvp=hvp,
                 probe_batch=probe_batch, chunk_size=chunk_size).value
