"""Hessian-vector products of the train loss (paper §2): the operator v ↦ H v the estimators use.

The Hessian of a network's loss is never formed: :mod:`phasezoo.landscape.hessian` computes its
top eigenvalue and trace from products H v alone, and this module provides them, as PyHessian
(Yao et al. 2020) does, with the samples regrouped and a choice of three implementations.

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

Regrouping samples (``chunk_size=``)
    In eval mode the samples of a batch do not interact and ``loss_fn`` is a per-sample mean, so
    L is also the size-weighted mean over ANY regrouping of the samples. The products therefore
    concatenate the batches and re-cut them into the fewest near-equal chunks of at most
    ``chunk_size`` (default 1024) samples: for the paper's 10 × 64 samples, one pass over 640
    instead of ten over 64. Small models are dominated by per-operation overhead, so this alone
    makes the products 2.6–3.6× faster (``benchmarks/README.md``). ``chunk_size=None`` keeps the
    batches as given: pass it if ``loss_fn`` is not a mean of per-sample losses (e.g. a token
    mean over batches with different numbers of tokens) or the model mixes samples in eval
    mode. The batches are also kept automatically when they cannot be concatenated (ragged
    shapes) or a BatchNorm without running statistics normalises with batch statistics even in
    eval mode. Peak memory is that of the double-backward graph of one chunk (of all chunks for
    ``"double_backward_cached"``).

Implementations (``hvp=``)
    * ``"double_backward"``: g = ∂L_c/∂θ with ``create_graph=True``, then
      H_c v = ∂(g·v)/∂θ = ``torch.autograd.grad(g, θ, grad_outputs=v)``: a forward, a backward
      and a double backward per chunk and product (PyHessian's way, per batch).
    * ``"double_backward_cached"`` (default): the gradient graphs are built once per operator
      and kept (``retain_graph=True``), so a product is only the double backward. Fastest for
      single products (0.070 s against 0.101 and 0.174 for the other two on a width-8 digits
      ResNet-18, ``benchmarks/README.md``), which is all power iteration can use. Costs the
      memory of every chunk's graph while the operator is entered; ``"double_backward"`` with a
      small ``chunk_size`` is the low-memory choice.
    * ``"forward_over_reverse"``: ``torch.func.jvp(torch.func.grad(f), (θ,), (v,))`` with
      ``torch.func.functional_call`` (buffers such as BatchNorm's running statistics passed as
      constants; dropout is off in eval mode). Its first use imports ``torch._dynamo`` (seconds).

    Products run on ``scaled_dot_product_attention``'s math backend: the fused attention
    kernels have no double backward. Against pyhessian 0.1 (same model, data and settings) the
    products here were 4.4–5.0× faster with the same values.

Batched products (``probe_batch=k``)
    :func:`matvecs` multiplies k vectors in one product, via ``is_grads_batched=True`` (vmap over
    the double backward) or ``torch.func.vmap`` over the jvp. None beat a single cached product
    on a CPU, and batching costs k tangents of memory (and the trace up to k − 1 probes computed
    past its stopping point): hence ``DEFAULT_PROBE_BATCH = 1``.

Vectors
    A vector is a list of tensors shaped like the parameters (``op.params``); :func:`flatten` and
    :func:`unflatten` convert to and from one flat column, :func:`dot` accumulates in float64.
    Random vectors (:func:`gaussian`, :func:`rademacher`) come from a given CPU
    ``torch.Generator`` and are moved to the parameters' device, so the same seed gives the same
    vectors on any device. (On the CPU they are even PyHessian's vectors for the same
    ``torch.manual_seed``: both draw ``randn`` / ``randint(0, 2)`` per parameter in order.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from phasezoo.tasks import as_batch_loss

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_HVP",
    "DEFAULT_PROBE_BATCH",
    "HVP_IMPLEMENTATIONS",
    "Batch",
    "HessianOperator",
    "LossFn",
    "dot",
    "flat_dtype",
    "flatten",
    "gaussian",
    "matvecs",
    "rademacher",
    "unflatten",
]

#: The Hessian-vector product implementations (see the module docstring for their costs).
HVP_IMPLEMENTATIONS = ("double_backward_cached", "double_backward", "forward_over_reverse")
#: The fastest one measured by ``benchmarks/hessian.py``.
DEFAULT_HVP = "double_backward_cached"
#: Samples per forward pass in the products (the batches are regrouped; see HessianOperator).
DEFAULT_CHUNK_SIZE = 1024
#: Vectors per batched product in :func:`matvecs` (measured trade-off, see above).
DEFAULT_PROBE_BATCH = 1

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
# Vectors as lists of per-parameter tensors, and as flat columns; several products at once


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Σ_j ⟨a_j, b_j⟩ accumulated in float64."""
    return float(sum(torch.sum(x.double() * y.double()) for x, y in zip(a, b)))


def gaussian(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    """A standard normal vector shaped like ``params``, drawn on the CPU from ``gen``."""
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]


def rademacher(params: Sequence[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    """A Rademacher (±1) vector shaped like ``params``, drawn on the CPU from ``gen``."""
    return [
        (torch.randint(0, 2, p.shape, generator=gen, dtype=p.dtype) * 2 - 1).to(p.device) for p in params
    ]


def flat_dtype(params: Sequence[torch.Tensor]) -> torch.dtype:
    """The dtype a flat column of ``params`` needs: their promoted dtype."""
    dtype = params[0].dtype
    for p in params[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


def flatten(v: Sequence[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The vector ``v`` as one flat column of ``dtype``."""
    return torch.cat([t.reshape(-1).to(dtype) for t in v])


def unflatten(x: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The flat column ``x`` as a vector shaped like ``params``, in their dtypes."""
    out, start = [], 0
    for p in params:
        out.append(x[start:start + p.numel()].view(p.shape).to(p.dtype))
        start += p.numel()
    return out


def matvecs(op: Any, vectors: list[list[torch.Tensor]], probe_batch: int) -> list[list[torch.Tensor]]:
    """H v for each v in ``vectors``, ``probe_batch`` vectors per (batched) product.

    ``op`` is an entered :class:`HessianOperator` or any object with its ``matvec`` and
    ``matvec_batched``.
    """
    out: list[list[torch.Tensor]] = []
    for i in range(0, len(vectors), probe_batch):
        group = vectors[i:i + probe_batch]
        if len(group) == 1:
            out.append(op.matvec(group[0]))
        else:
            stacked = op.matvec_batched([torch.stack(ts) for ts in zip(*group)])
            out.extend([list(ts) for ts in zip(*(t.unbind(0) for t in stacked))])
    return out
