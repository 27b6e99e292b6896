"""Weight averaging of zoo members (paper §4.2): Wise-FT-style checkpoint averaging within one run,
and git re-basin averaging of two runs.

* :func:`wise_ft_average` — a uniform average of the last ``k`` checkpoints of ONE training run,
  ``θ̄ = (1/k) Σ_{j=T−k+1..T} θ_j`` (weight-space ensembling in the spirit of Wise-FT, Wortsman et
  al. 2022, "Robust fine-tuning of zero-shot models", CVPR; there between the zero-shot and the
  fine-tuned weights, here between checkpoints along one trajectory).
* :func:`rebasin_average` — two independently trained runs: align ``θ_b`` to ``θ_a`` by weight
  matching (git re-basin, Ainsworth et al. 2022, :func:`phasezoo.downstream.rebasin.align`), then
  take the midpoint ``θ̄ = ½ θ_a + ½ π(θ_b)``.

Averaged BatchNorm running statistics are not the statistics of the averaged network, so both
recompute them with one full pass over ``x_bn`` (usually the training images) by
:func:`phasezoo.landscape.curves.recompute_bn_statistics`.

The benefit of averaging is ``averaging_gain = acc(θ̄) − mean_i acc(θ_i)`` over the endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["average_state_dicts", "averaging_gain", "rebasin_average", "wise_ft_average"]


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]],
                        weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted average ``Σ_i w_i θ_i`` of state dicts with identical keys and shapes.

    ``weights`` default to uniform ``1/n``; given weights must be non-negative and are normalised
    to sum to 1. Floating-point entries are averaged (accumulated in float64, returned in the
    first dict's dtype and device); non-floating entries (e.g. BatchNorm's
    ``num_batches_tracked``) are copied from the first state dict.
    """
    sds = list(state_dicts)
    if not sds:
        raise ValueError("average_state_dicts needs at least one state dict")
    n = len(sds)
    if weights is None:
        w = [1.0 / n] * n
    else:
        w = [float(v) for v in weights]
        if len(w) != n:
            raise ValueError(f"{len(w)} weights for {n} state dicts")
        if any(v < 0 for v in w) or sum(w) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {w}")
        s = sum(w)
        w = [v / s for v in w]
    first = sds[0]
    for i, sd in enumerate(sds[1:], 1):
        if sd.keys() != first.keys():
            raise ValueError(f"state dict {i} has different keys from state dict 0")
    out = {}
    for k, a in first.items():
        if not a.is_floating_point():
            out[k] = a.clone()
            continue
        acc = torch.zeros(a.shape, dtype=torch.float64, device=a.device)
        for wi, sd in zip(w, sds):
            t = sd[k]
            if t.shape != a.shape:
                raise ValueError(f"{k}: shape {tuple(t.shape)} differs from {tuple(a.shape)}")
            acc += wi * t.to(a.device, torch.float64)
        out[k] = acc.to(a.dtype)
    return out


def wise_ft_average(member_dir: str | Path, k: int, x_bn: torch.Tensor, *,
                    batch_size: int = 128) -> nn.Module:
    """Uniform average of the last ``k`` stored checkpoints of one member, BN recomputed on ``x_bn``.

    The checkpoints are those listed by :meth:`phasezoo.store.MemberStore.checkpoint_epochs`
    (whatever the zoo's checkpoint schedule stored, the epoch-0 initialisation included if
    stored); if ``k`` exceeds their number, all are used. The weights are averaged by
    :func:`average_state_dicts`, then the BatchNorm running statistics are recomputed from one
    full pass over ``x_bn`` (moved to the model's device; :func:`recompute_bn_statistics`).

    Returns the model in eval mode, on the CPU, with ``model.averaging_info = {"k_requested",
    "k_used", "epochs"}`` recording which checkpoints entered the average.
    """
    from phasezoo.landscape.curves import recompute_bn_statistics
    from phasezoo.store import MemberStore
    from phasezoo.zoo import load_member

    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    store = MemberStore(Path(member_dir))
    epochs = store.checkpoint_epochs()
    if not epochs:
        from phasezoo.errors import CorruptFileError

        raise CorruptFileError(f"no checkpoint in {member_dir}")
    chosen = epochs[-k:]
    model, _ = load_member(member_dir, chosen[-1])
    model.load_state_dict(average_state_dicts([store.load_checkpoint(e)[1] for e in chosen]))
    recompute_bn_statistics(model, x_bn.to(next(model.parameters()).device), batch_size=batch_size)
    model.eval()
    model.averaging_info = {"k_requested": k, "k_used": len(chosen), "epochs": list(chosen)}
    return model


def rebasin_average(model_a: nn.Module, model_b: nn.Module, x_bn: torch.Tensor, *,
                    batch_size: int = 128, max_iter: int = 100, seed: int = 0) -> nn.Module:
    """Git re-basin midpoint: ``½ θ_a + ½ π(θ_b)``, BN statistics recomputed over ``x_bn``.

    ``π`` is found by weight matching (:func:`phasezoo.downstream.rebasin.align`, ``max_iter``,
    ``seed``); the average is :func:`phasezoo.downstream.rebasin.interpolate` at ``α = 0.5``; the
    BatchNorm running statistics are then recomputed from a full pass over ``x_bn``. Neither input
    is modified; returns a new model in eval mode.
    """
    from phasezoo.downstream.rebasin import align, interpolate
    from phasezoo.landscape.curves import recompute_bn_statistics

    b_aligned = align(model_a, model_b, max_iter=max_iter, seed=seed)
    avg = interpolate(model_a, b_aligned, 0.5)
    recompute_bn_statistics(avg, x_bn.to(next(avg.parameters()).device), batch_size=batch_size)
    return avg.eval()


def averaging_gain(averaged_acc: float, endpoint_accs: Sequence[float]) -> float:
    """``averaged_acc − mean(endpoint_accs)``: the accuracy gained by averaging the endpoints."""
    accs = [float(a) for a in endpoint_accs]
    if not accs:
        raise ValueError("averaging_gain needs at least one endpoint accuracy")
    return float(averaged_acc) - sum(accs) / len(accs)
