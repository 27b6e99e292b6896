"""What every measurement does with a trained model: evaluate it in eval mode, collect its
outputs in batches, and recompute its BatchNorm statistics after its weights were changed
(curves, averaging, re-basin, Wise-FT).

The mode a model is in is always restored afterwards, also on errors: callers pass models they
keep using.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Context: model in eval mode, its previous mode restored afterwards (also on errors)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@torch.no_grad()
def batched_outputs(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """The model's outputs (logits) on ``x``, in eval mode and without gradients.

    Batches of ``batch_size`` go to the model's device (BatchNorm is in eval mode, so the batch
    size changes speed, never values); the result is detached and lives on ``x``'s device, so a
    large CPU tensor never has to fit on the accelerator at once.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    first = next(model.parameters(), None)
    dev = x.device if first is None else first.device
    with eval_mode(model):
        outs = [model(x[i : i + batch_size].to(dev)).to(x.device) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).detach()


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that track running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _bn_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive batches covering ``n`` rows; a trailing single row joins the previous batch
    (BatchNorm in train mode cannot normalise one sample when the spatial size is 1×1)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, x: torch.Tensor, *, batch_size: int = 128) -> bool:
    """Recompute every BatchNorm's running statistics from one pass over ``x``, in place.

    Running statistics are reset, then each batch (in order, train mode, no gradients) updates
    them with ``momentum = b/(seen + b)`` so that after the pass ``running_mean`` is the
    per-sample average of the batch means (= the data mean for a BatchNorm directly on the
    input) and ``running_var`` the batch-size-weighted average of the unbiased batch variances
    (Garipov et al.'s ``update_bn``). Each BatchNorm's momentum and the model's train/eval mode
    are restored afterwards. Returns False (and does nothing) when the model has no BatchNorm
    that tracks running statistics.
    """
    bns = batchnorms(model)
    if not bns:
        return False
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
    model.train()
    seen = 0
    try:
        for sl in _bn_slices(len(x), batch_size):
            xb = x[sl]
            b = len(xb)
            for m in bns:
                m.momentum = b / (seen + b)
            model(xb)
            seen += b
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return True


__all__ = ["batched_outputs", "batchnorms", "eval_mode", "recompute_bn_statistics"]
