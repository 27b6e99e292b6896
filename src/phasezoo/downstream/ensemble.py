"""Ensembles of zoo members (paper §4.2).

The ensemble prediction is the mean of the members' logits (each member in eval mode)::

    f_ens(x) = (1/M) Σ_m f_m(x)

and the ensemble gain is ``acc(f_ens) − (1/M) Σ_m acc(f_m)`` (accuracy of the averaged logits
minus the mean accuracy of the members).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from phasezoo.models.utils import batched_outputs
from phasezoo.tasks import score

__all__ = ["ensemble_accuracy", "ensemble_logits"]


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return batched_outputs(model, x, batch_size=batch_size).float().cpu()


def ensemble_logits(models: Sequence[nn.Module], x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Mean of the models' logits on ``x`` (eval mode, no gradients), on the CPU, float32.

    Each model's train/eval mode is restored afterwards.
    """
    models = list(models)
    if not models:
        raise ValueError("ensemble_logits needs at least one model")
    total = None
    for m in models:
        out = _logits(m, x, batch_size).double()
        total = out if total is None else total + out
    return (total / len(models)).float()


def ensemble_accuracy(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor,
                      *, batch_size: int = 1024) -> dict:
    """``{"ensemble_acc", "member_accs", "mean_member_acc", "gain", "num_members"}`` on ``(x, y)``.

    ``gain = ensemble_acc − mean_member_acc``.
    """
    models = list(models)
    if not models:
        raise ValueError("ensemble_accuracy needs at least one model")
    y = y.cpu()
    total, accs = None, []
    for m in models:
        out = _logits(m, x, batch_size).double()
        accs.append(float((out.argmax(1) == y).double().mean()))
        total = out if total is None else total + out
    ens = float(((total / len(models)).float().argmax(1) == y).double().mean())
    mean = sum(accs) / len(accs)
    return {"ensemble_acc": ens, "member_accs": accs, "mean_member_acc": mean, "gain": ens - mean,
            "num_members": len(models)}


class OutputAverage(nn.Module):
    """The ensemble as one model: ``forward(x)`` is the mean of the members' outputs (logits,
    next-token logits, or predicted PDE solutions), so any task's ``evaluate`` scores it."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def ensemble_scores(models: Sequence[nn.Module], task, x: torch.Tensor, y: torch.Tensor) -> dict:
    """``ensemble_acc`` etc. as :func:`ensemble_accuracy`, for any task, where a model's score
    is ``1 − error`` (accuracy; next-token accuracy; 1 − relative L2 error of a PINN) and the
    ensemble is :class:`OutputAverage`."""
    accs = [score(task, m, x, y) for m in models]
    ens = score(task, OutputAverage(models), x, y)
    mean = sum(accs) / len(accs)
    return {"ensemble_acc": ens, "member_accs": accs, "mean_member_acc": mean, "gain": ens - mean,
            "num_members": len(models), "score": "1 - error"}

