"""Permutation alignment of two ResNets or transformers by weight matching (git re-basin).

Weight matching (Ainsworth, Hayase & Srinivasa, 2022, "Git Re-Basin: Merging Models modulo
Permutation Symmetries", arXiv:2209.04836, §3.2) looks for permutations ``P = {P_g}`` of the hidden
units of model B that bring its weights as close as possible to model A's::

    max_P  Σ_ℓ ⟨ W_ℓ^A , P_out(ℓ) W_ℓ^B P_in(ℓ)ᵀ ⟩_F
         = min_P  Σ_ℓ ‖ W_ℓ^A − P_out(ℓ) W_ℓ^B P_in(ℓ)ᵀ ‖²_F        (permutations preserve norms)

where ``P_out(ℓ)`` / ``P_in(ℓ)`` are the permutations of the groups that layer ℓ's output / input
axes belong to (identity for the network input and the class logits). The problem is solved by
coordinate descent: for one group ``g`` with every other permutation fixed, the objective is linear
in ``P_g``, ``Σ_ij (P_g)_ij S_ij`` with ``S = Σ_{axes (ℓ, d) in g} W_ℓ^A[d] · (W_ℓ^B permuted on
its other axes)[d]ᵀ`` (each tensor flattened to ``(n_g, -1)`` along axis ``d``), a linear
assignment problem solved exactly by :func:`scipy.optimize.linear_sum_assignment`. Groups are
visited in a random order per sweep (``seed``); the descent stops after a sweep in which no group
improved, or after ``max_iter`` sweeps.

Permutation groups of phasezoo's ResNets (:mod:`phasezoo.models.resnet`)
-------------------------------------------------------------------------
The crux is the residual stream. A block computes ``relu(f(x) + shortcut(x))``; with an identity
shortcut the block's output channels *are* its input channels, so the stem, every block output
and every identity shortcut of a stage must be permuted by ONE permutation. The ``rebasin``
package used by the authors' code never permutes the residual stream (it only permutes the
blocks' inner channels), so it misses most of the symmetry — see ``DESIGN.md`` §3. Here:

* ``stream{k}`` — a residual stream: the output channels of the stem ``conv1``/``bn1`` (if no
  projection follows it), of every block's last conv/BN (BasicBlock ``conv2``/``bn2``,
  Bottleneck ``conv3``/``bn3``), the identity shortcuts (nothing to permute), and the output of
  a projection shortcut (``shortcut.0`` conv dim 0 and ``shortcut.1`` BN). A projection
  shortcut *starts* a new stream: its output belongs to the new stream, its input (``shortcut.0``
  dim 1, like the first conv's dim 1) to the previous one. The final ``linear`` layer's input
  columns (dim 1) are permuted by the last stream. ``k`` is the last stage whose blocks write into
  the stream, ``0`` for a stem followed directly by a projection:

  - ResNet-18: ``stream1`` = stem + layer1 (identity shortcuts throughout layer1), ``stream2``,
    ``stream3``, ``stream4`` = layer2..4 (each opened by its strided projection shortcut);
  - ResNet-50: ``stream0`` = the stem alone (``layer1.0`` projects ``w`` to ``4w`` channels),
    ``stream1``..``stream4`` = layer1..4.

* ``layer{s}.{b}.inner{k}`` — the inner channels of block ``b`` of stage ``s``: the output of
  ``conv{k}``/``bn{k}`` and the input (dim 1) of ``conv{k+1}``. BasicBlock has ``inner1``;
  Bottleneck has ``inner1`` and ``inner2``.

Permuting an output channel of a conv permutes that conv's weight along dim 0, the following
BatchNorm's ``weight``, ``bias``, ``running_mean`` and ``running_var`` (never
``num_batches_tracked``), and dim 1 of every conv/linear that consumes it. The groups are built by
walking the module structure (stem, ``layer1..layer4``, each block's ``conv{k}``/``bn{k}`` and
``shortcut``), so any width, depth, ``in_channels`` and ``num_classes`` work.

Only trainable parameters (conv/linear weights, BN weight and bias) enter the similarity ``S``;
BN running statistics are permuted consistently but are not matched (they are statistics of the
data, not weights). After interpolating two aligned models the BN statistics are stale: callers
must recompute them (a cumulative average over a full pass of the training data, DESIGN.md §3).

Transformers (:mod:`phasezoo.models.vit`, :mod:`phasezoo.models.gpt`)
-----------------------------------------------------------------------
A model that defines a ``permutation_groups()`` method supplies its own groups, and everything
here (random permutations, :func:`permute`, :func:`weight_matching`, :func:`align`) works from
them unchanged: an axis may be any dimension of any state-dict tensor (e.g. dim 2 of the ViT
position embedding ``pos``, shape (1, n, d)). The ViT and GPT define two kinds of group:

* ``stream`` — the residual stream, ONE permutation of the ``d`` model features for the whole
  network (pre-LN blocks add into it everywhere; LayerNorm commutes with it since its mean and
  variance are permutation invariant): the patch/token and position embeddings' feature axis,
  the ViT class token, every LayerNorm weight and bias, the input columns of ``q``/``k``/``v``/
  ``fc1`` and of the ViT head ``linear``, the output rows and biases of ``proj`` and ``fc2``.
  The GPT head is tied to ``wte`` (one tensor, one key), so ``wte`` dim 1 covers both uses.
* ``blocks.{i}.mlp`` — block ``i``'s MLP hidden units (``fc1`` rows and bias, ``fc2`` columns).

Attention heads are not permuted: their symmetries (permuting heads, and features within a head,
jointly for ``q``/``k`` and for ``v``/``proj`` columns) are block-structured permutations of the
``d`` axis, and a group here permutes a whole axis without constraint. No transformer has
BatchNorm, so an interpolated transformer needs no statistics recomputed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = ["align", "interpolate", "permutation_groups", "permute", "random_permutations",
           "weight_matching"]

#: An axis of a tensor: (state_dict key, dimension).
Axis = tuple[str, int]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _bn_axes(prefix: str, bn: nn.Module) -> list[Axis]:
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        raise TypeError(f"{prefix} is {type(bn).__name__}, expected a BatchNorm layer")
    keys = [k for k in _BN_KEYS if getattr(bn, k, None) is not None]
    return [(f"{prefix}.{k}", 0) for k in keys]


def _block_convs(block: nn.Module) -> list[int]:
    ks = []
    while hasattr(block, f"conv{len(ks) + 1}"):
        ks.append(len(ks) + 1)
    if not ks or any(not hasattr(block, f"bn{k}") for k in ks) or not hasattr(block, "shortcut"):
        raise TypeError(f"{type(block).__name__} is not a residual block with conv{{k}}/bn{{k}}/shortcut")
    return ks


def permutation_groups(model: nn.Module) -> dict[str, list[Axis]]:
    """The permutation groups of a phasezoo ResNet: group name -> list of ``(state_dict key, dim)``.

    Every axis listed in a group is indexed by that group's permutation (see the module docstring
    for the mapping). Residual streams are named ``stream{k}``, inner channels
    ``layer{s}.{b}.inner{k}``; the dict is ordered by position in the network. A model with its
    own ``permutation_groups()`` method (the transformers) returns that method's groups.
    """
    if hasattr(model, "permutation_groups"):
        return model.permutation_groups()
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "linear"):
        if not hasattr(model, name):
            raise TypeError(f"{type(model).__name__} has no {name!r}: not a phasezoo ResNet")
    streams: list[list[Axis]] = []     # axes of each residual stream, in order of creation
    stream_stage: list[int] = []       # last stage that writes into each stream
    order: list[tuple[str, int | str]] = []   # ("stream", index) or ("inner", name), network order
    inner: dict[str, list[Axis]] = {}

    streams.append([("conv1.weight", 0), *_bn_axes("bn1", model.bn1)])
    stream_stage.append(0)
    order.append(("stream", 0))
    cur = 0                            # index of the stream the next block reads
    for s in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{s}")):
            p = f"layer{s}.{b}"
            ks = _block_convs(block)
            streams[cur].append((f"{p}.conv1.weight", 1))     # the block reads the stream
            if isinstance(block.shortcut, nn.Identity):
                out = cur
            elif (isinstance(block.shortcut, nn.Sequential) and len(block.shortcut) == 2
                  and isinstance(block.shortcut[0], nn.Conv2d)):
                streams[cur].append((f"{p}.shortcut.0.weight", 1))
                streams.append([(f"{p}.shortcut.0.weight", 0),
                                *_bn_axes(f"{p}.shortcut.1", block.shortcut[1])])
                stream_stage.append(s)
                out = len(streams) - 1
                order.append(("stream", out))
            else:
                raise TypeError(f"{p}.shortcut is neither Identity nor Sequential(Conv2d, BatchNorm)")
            for k in ks[:-1]:                                  # inner channels between convs
                name = f"{p}.inner{k}"
                inner[name] = [(f"{p}.conv{k}.weight", 0), *_bn_axes(f"{p}.bn{k}", getattr(block, f"bn{k}")),
                               (f"{p}.conv{k + 1}.weight", 1)]
                order.append(("inner", name))
            last = ks[-1]
            streams[out] += [(f"{p}.conv{last}.weight", 0),
                             *_bn_axes(f"{p}.bn{last}", getattr(block, f"bn{last}"))]
            stream_stage[out] = s
            cur = out
    streams[cur].append(("linear.weight", 1))

    if len(set(stream_stage)) != len(streams):
        raise TypeError("two residual streams end in the same stage; cannot name the groups")
    groups: dict[str, list[Axis]] = {}
    for kind, ref in order:
        if kind == "stream":
            groups[f"stream{stream_stage[ref]}"] = streams[ref]
        else:
            groups[ref] = inner[ref]
    return groups


def _group_sizes(groups: dict[str, list[Axis]], state: dict[str, torch.Tensor]) -> dict[str, int]:
    sizes = {}
    for g, axes in groups.items():
        ns = {state[k].shape[d] for k, d in axes}
        if len(ns) != 1:
            raise ValueError(f"group {g} has axes of different sizes {sorted(ns)}")
        sizes[g] = ns.pop()
    return sizes


def random_permutations(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A uniformly random permutation (int64 index tensor) for every group of ``model``."""
    groups = permutation_groups(model)
    sizes = _group_sizes(groups, model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.randperm(n, generator=gen) for g, n in sizes.items()}


def _permute_state(state: dict[str, torch.Tensor], groups: dict[str, list[Axis]],
                   perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for g, perm in perms.items():
        for k, d in groups[g]:
            out[k] = out[k].index_select(d, perm.to(out[k].device))
    return out


def permute(model: nn.Module, perms: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with hidden units permuted: ``new[..., i, ...] = old[..., perm[i], ...]``.

    ``perms`` maps group names (:func:`permutation_groups`) to index tensors; missing groups are
    left unpermuted. The copy computes the same function as ``model``.
    """
    groups = permutation_groups(model)
    state = model.state_dict()
    sizes = _group_sizes(groups, state)
    checked = {}
    for g, p in perms.items():
        if g not in groups:
            raise KeyError(f"unknown permutation group {g!r}; known: {', '.join(groups)}")
        p = torch.as_tensor(p, dtype=torch.long).cpu()
        if p.shape != (sizes[g],) or not torch.equal(p.sort().values, torch.arange(sizes[g])):
            raise ValueError(f"perms[{g!r}] is not a permutation of range({sizes[g]})")
        checked[g] = p
    new = copy.deepcopy(model)
    new.load_state_dict(_permute_state(state, groups, checked))
    return new


def weight_matching(model_a: nn.Module, model_b: nn.Module, *, max_iter: int = 100,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """Permutations of ``model_b``'s groups maximising ``Σ_ℓ ⟨W_ℓ^A, P W_ℓ^B Pᵀ⟩`` (coordinate descent).

    Returns ``{group: perm}`` such that ``permute(model_b, perm)`` is aligned to ``model_a``.
    """
    groups = permutation_groups(model_a)
    if permutation_groups(model_b) != groups:
        raise ValueError("model_a and model_b have different architectures")
    params = {k for k, _ in model_a.named_parameters()}
    sa, sb = model_a.state_dict(), model_b.state_dict()
    for k in sa:
        if sa[k].shape != sb[k].shape:
            raise ValueError(f"{k}: shape {tuple(sa[k].shape)} in model_a, {tuple(sb[k].shape)} in model_b")
    sizes = _group_sizes(groups, sa)
    # the axes of each matched tensor, key -> {dim: group}
    axes_of: dict[str, dict[int, str]] = {}
    for g, axes in groups.items():
        for k, d in axes:
            if k in params:
                if d in axes_of.setdefault(k, {}):
                    raise ValueError(f"{k} dim {d} is in two groups")
                axes_of[k][d] = g
    wa = {k: sa[k].detach().to("cpu", torch.float64) for k in axes_of}
    wb = {k: sb[k].detach().to("cpu", torch.float64) for k in axes_of}
    perms = {g: torch.arange(n) for g, n in sizes.items()}
    names = list(groups)
    rng = np.random.default_rng(seed)

    for _ in range(max_iter):
        improved = False
        for gi in rng.permutation(len(names)):
            g = names[gi]
            n = sizes[g]
            sim = torch.zeros(n, n, dtype=torch.float64)
            for k, d in groups[g]:
                if k not in axes_of:
                    continue
                w = wb[k]
                for d2, g2 in axes_of[k].items():
                    if d2 != d:
                        w = w.index_select(d2, perms[g2])
                sim += wa[k].movedim(d, 0).reshape(n, -1) @ w.movedim(d, 0).reshape(n, -1).T
            s = sim.numpy()
            rows, cols = linear_sum_assignment(s, maximize=True)
            old = s[np.arange(n), perms[g].numpy()].sum()
            new = s[rows, cols].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[g] = torch.as_tensor(cols, dtype=torch.long)
                improved = True
        if not improved:
            break
    return perms


def align(model_a: nn.Module, model_b: nn.Module, *, max_iter: int = 100, seed: int = 0) -> nn.Module:
    """A deep copy of ``model_b`` with its hidden units permuted to match ``model_a`` (weight matching).

    Maximises ``Σ_ℓ ⟨W_ℓ^A, P_out W_ℓ^B P_inᵀ⟩`` over the permutation groups of the module
    docstring — residual streams included (Ainsworth et al., 2022) — by coordinate descent with a
    linear assignment per group, groups in a random order per sweep drawn from ``seed``, until a
    sweep improves nothing or ``max_iter`` sweeps. Neither input is modified; the result computes
    exactly the same function as ``model_b`` (BN running statistics are permuted along).
    """
    return permute(model_b, weight_matching(model_a, model_b, max_iter=max_iter, seed=seed))


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """A deep copy of ``model_a`` with state ``(1 − α)·θ_a + α·θ_b``.

    Every floating-point entry of the state dict is interpolated — parameters *and* BatchNorm
    running statistics; integer buffers (``num_batches_tracked``) are taken from ``model_a``.
    Interpolated running statistics are not the statistics of the interpolated network: the caller
    must recompute BatchNorm statistics (a full pass over the training data) before evaluating.
    """
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("model_a and model_b have different state dict keys")
    alpha = float(alpha)
    out = {}
    for k, a in sa.items():
        b = sb[k]
        if a.shape != b.shape:
            raise ValueError(f"{k}: shape {tuple(a.shape)} in model_a, {tuple(b.shape)} in model_b")
        out[k] = (1.0 - alpha) * a + alpha * b.to(a.device, a.dtype) if a.is_floating_point() else a.clone()
    new = copy.deepcopy(model_a)
    new.load_state_dict(out)
    return new
