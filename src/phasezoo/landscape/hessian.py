"""Hessian top eigenvalue and trace of the train loss (paper §2): PyHessian's algorithms, Lanczos and Hutch++.

The paper characterises the loss landscape around a trained model by the curvature of its
*train* loss: the largest eigenvalue of the Hessian (sharpness) and its trace (total curvature),
computed with PyHessian (Yao et al. 2020) on 10 batches × 64 train samples, model in eval mode,
``maxIter=100, tol=1e-3``. This module computes both without ever forming the Hessian, from
Hessian-vector products (HVPs) only: PyHessian's power iteration and Hutchinson estimator (the
paper's), and by default Lanczos for the eigenvalue and Hutch++ for the trace, the trace stopping
once its standard error is 5 % of its value (measured below).

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

Hessian-vector products (``hvp=``)
    * ``"double_backward"``: g = ∂L_c/∂θ with ``create_graph=True``, then
      H_c v = ∂(g·v)/∂θ = ``torch.autograd.grad(g, θ, grad_outputs=v)``: a forward, a backward
      and a double backward per chunk and product (PyHessian's way, per batch).
    * ``"double_backward_cached"`` (default): the gradient graphs are built once per call and
      kept (``retain_graph=True``), so a product is only the double backward. Fastest for single
      products (0.070 s against 0.101 and 0.174 for the other two on a width-8 digits ResNet-18,
      ``benchmarks/README.md``), which is all power iteration can use. Costs the memory of every
      chunk's graph for the duration of the call; ``"double_backward"`` with a small
      ``chunk_size`` is the low-memory choice.
    * ``"forward_over_reverse"``: ``torch.func.jvp(torch.func.grad(f), (θ,), (v,))`` with
      ``torch.func.functional_call`` (buffers such as BatchNorm's running statistics passed as
      constants; dropout is off in eval mode). Its first use imports ``torch._dynamo`` (seconds).
    * Batched probes (``probe_batch=k``, trace only): k Rademacher probes in one product, via
      ``is_grads_batched=True`` (vmap over the double backward) or ``torch.func.vmap`` over the
      jvp. None beat a single cached product on a CPU, and batching costs k tangents of memory
      and up to k − 1 probes computed past the stopping point: hence ``DEFAULT_PROBE_BATCH = 1``.

    Results do not depend on ``hvp``, ``chunk_size`` or ``probe_batch`` beyond floating-point
    noise: the probes are drawn one after another from the same generator whatever the
    batching, and batched probe values are processed in order, the estimate stopping at the
    first probe where the rule fires. Against pyhessian 0.1 (same model, data, settings and
    methods) the products here were 4.4–5.0× faster with the same values.

Reproducibility
    Random vectors come from a CPU ``torch.Generator`` seeded with ``seed`` and are moved to the
    parameters' device, so the same seed gives the same probes on any device and the same value
    on the same device. (On the CPU they are even PyHessian's vectors for the same
    ``torch.manual_seed``: both draw ``randn`` / ``randint(0, 2)`` per parameter in order.)
    Hutch++ draws its k sketch columns first, then the residual probes. Lanczos is
    deterministic given its start vector. Every estimate records its settings (``method,
    max_iter, tol, seed, num_samples, num_batches, chunk_size, num_chunks, num_params, hvp,
    probe_batch``; Lanczos ``ncv``; the trace ``probes, rel_stderr, min_probes,
    sketch_size``, those its rule does not use set to None), the number of products used
    (``iterations``, also ``diagnostics["products"]``), whether the stopping rule fired, and
    for the trace its standard error and, for Hutch++, the deflated and residual parts.
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
    "DEFAULT_EIG_METHOD",
    "DEFAULT_HVP",
    "DEFAULT_LANCZOS_NCV",
    "DEFAULT_MAX_ITER",
    "DEFAULT_MIN_PROBES",
    "DEFAULT_PROBE_BATCH",
    "DEFAULT_REL_STDERR",
    "DEFAULT_SKETCH_SIZE",
    "DEFAULT_TRACE_METHOD",
    "EIG_METHODS",
    "HVP_IMPLEMENTATIONS",
    "TRACE_METHODS",
    "HessianEstimate",
    "HessianOperator",
    "top_eigenvalue",
    "top_eigenvalue_of",
    "trace",
    "trace_of",
]

#: The Hessian-vector product implementations (see the module docstring for their costs).
HVP_IMPLEMENTATIONS = ("double_backward_cached", "double_backward", "forward_over_reverse")
#: The fastest one measured by ``benchmarks/hessian.py``.
DEFAULT_HVP = "double_backward_cached"
#: Samples per forward pass in the products (the batches are regrouped; see HessianOperator).
DEFAULT_CHUNK_SIZE = 1024
#: Rademacher probes per batched product in :func:`trace` (measured trade-off, see above).
DEFAULT_PROBE_BATCH = 1

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

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
# Vectors as lists of per-parameter tensors, and as flat columns


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Σ_j ⟨a_j, b_j⟩ accumulated in float64."""
    return float(sum(torch.sum(x.double() * y.double()) for x, y in zip(a, b)))


def _gaussian(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]


def _rademacher(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    return [
        (torch.randint(0, 2, p.shape, generator=gen, dtype=p.dtype) * 2 - 1).to(p.device) for p in params
    ]


def _flat_dtype(params: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = params[0].dtype
    for p in params[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


def _flatten(v: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([t.reshape(-1).to(dtype) for t in v])


def _unflatten(x: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for p in params:
        out.append(x[start:start + p.numel()].view(p.shape).to(p.dtype))
        start += p.numel()
    return out


def _products(op: Any, vectors: list[list[torch.Tensor]], probe_batch: int) -> list[list[torch.Tensor]]:
    """H v for each v in ``vectors``, ``probe_batch`` vectors per (batched) product."""
    out: list[list[torch.Tensor]] = []
    for i in range(0, len(vectors), probe_batch):
        group = vectors[i:i + probe_batch]
        if len(group) == 1:
            out.append(op.matvec(group[0]))
        else:
            stacked = op.matvec_batched([torch.stack(ts) for ts in zip(*group)])
            out.extend([list(ts) for ts in zip(*(t.unbind(0) for t in stacked))])
    return out


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
    floating-point noise). See the module docstring for the measured costs.
    """
    with HessianOperator(model, loss_fn, batches, hvp=hvp, chunk_size=chunk_size) as op:
        return top_eigenvalue_of(op, max_iter=max_iter, tol=tol, seed=seed, method=method, ncv=ncv)


def top_eigenvalue_of(op: Any, *, max_iter: int = DEFAULT_MAX_ITER, tol: float = 1e-3, seed: int = 0,
                      method: str = DEFAULT_EIG_METHOD, ncv: int = DEFAULT_LANCZOS_NCV) -> HessianEstimate:
    """:func:`top_eigenvalue` of an operator: an entered :class:`HessianOperator`, or any object
    with its attributes (``params``, ``num_params``, ``matvec``, ``matvec_batched`` and those
    recorded in the settings; ``benchmarks/hessian.py`` passes a dense matrix this way)."""
    _check(max_iter, tol)
    _check_choice("eigenvalue method", method, EIG_METHODS)
    if not isinstance(ncv, int) or ncv < 2:
        raise ValueError(f"ncv must be an integer >= 2, got {ncv!r}")
    gen = torch.Generator().manual_seed(seed)
    v = _gaussian(op.params, gen)
    if method == "power":
        value, products, converged, history = _power_iteration(op, v, max_iter, tol)
        settings = _settings(op, method, max_iter, tol, seed, 1)
    else:
        value, products, converged, history, used_ncv = _lanczos(op, v, max_iter, tol, ncv)
        settings = _settings(op, method, max_iter, tol, seed, 1, ncv=used_ncv)
    return HessianEstimate(value, products, converged, None, settings, tuple(history), {"products": products})


def _power_iteration(op: Any, v: list[torch.Tensor], max_iter: int,
                     tol: float) -> tuple[float, int, bool, list[float]]:
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
    import numpy as np
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

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
        hx = _flatten(op.matvec(_unflatten(xt.to(device), op.params)), torch.float64).cpu()
        ritz.add(xt, hx)
        return hx.numpy()

    if d < 3:  # too small for ARPACK (it needs k + 1 < ncv <= d): Rayleigh-Ritz on e_1, e_2 is exact
        for i in range(min(d, max_iter)):
            matvec(np.eye(d)[i])
        return ritz.value(), count, count == d, [], ncv
    a = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
    start = _flatten(v0, torch.float64).cpu().numpy()
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
    dtype = _flat_dtype(op.params)
    while len(values) < budget and not converged:
        probes = [_rademacher(op.params, gen) for _ in range(min(probe_batch, budget - len(values)))]
        if q is not None:  # project the probes: p = (I − QQᵀ) g, and pᵀ H p = gᵀ P H P g
            flat = torch.stack([_flatten(g, dtype) for g in probes], dim=1)
            flat = flat - q @ (q.T @ flat)
            probes = [_unflatten(c, op.params) for c in flat.T]
        for g, hg in zip(probes, _products(op, probes, probe_batch)):
            values.append(_dot(g, hg))
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
    dtype = _flat_dtype(op.params)
    s = [_rademacher(op.params, gen) for _ in range(k)]
    hs = torch.stack([_flatten(h, dtype) for h in _products(op, s, probe_batch)], dim=1)
    q, _ = torch.linalg.qr(hs)
    del hs
    cols = [_unflatten(c, op.params) for c in q.T]
    hq = torch.stack([_flatten(h, dtype) for h in _products(op, cols, probe_batch)], dim=1)
    t = (q.T.double() @ hq.double())
    del hq
    deflated = float(torch.trace(t))
    eigs = torch.linalg.eigvalsh((t + t.T) / 2)
    floor = math.sqrt(torch.finfo(dtype).eps) * float(eigs.abs().sum())
    return q, deflated, floor
