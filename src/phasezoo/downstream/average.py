"""Weight averaging of zoo members (paper §4.2): Wise-FT between two checkpoints of one run, and
git re-basin averaging of two runs.

* :func:`wise_ft_curve` — Wise-FT (Wortsman et al. 2022, "Robust fine-tuning of zero-shot
  models", CVPR), the α-interpolation ``θ(α) = (1 − α) θ_early + α θ_final``. There θ_early is
  the zero-shot model and θ_final its fine-tuned descendant; here both are checkpoints of one
  trajectory: θ_early the one at :data:`phasezoo.spec.WISE_FT_EARLY_FRACTION` of training (half
  way, never the initialisation), θ_final the trained model. α is chosen on the train split.
* :func:`rebasin_average` — two independently trained runs: align ``θ_b`` to ``θ_a`` by weight
  matching (git re-basin, Ainsworth et al. 2022, :func:`phasezoo.downstream.rebasin.align`), then
  take the midpoint ``θ̄ = ½ θ_a + ½ π(θ_b)``.

Averaged BatchNorm running statistics are not the statistics of the averaged network, so both
recompute them with one full pass over ``x_bn`` (usually the training images) by
:func:`phasezoo.models.utils.recompute_bn_statistics`.

The benefit of averaging is ``averaging_gain = acc(θ̄) − mean_i acc(θ_i)`` over the endpoints.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from phasezoo.downstream.rebasin import align, interpolate
from phasezoo.models.utils import recompute_bn_statistics

__all__ = ["WISE_FT_ALPHAS", "average_state_dicts", "averaging_gain", "rebasin_average", "wise_ft_curve"]


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


#: Wise-FT's mixing coefficients α ∈ {0, 0.1, …, 1} (Wortsman et al. 2022 sweep the same grid)
WISE_FT_ALPHAS = tuple(i / 10 for i in range(11))


def wise_ft_curve(final: nn.Module, early_state: Mapping[str, torch.Tensor], task,
                  train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                  x_bn: torch.Tensor, *, alphas: Sequence[float] = WISE_FT_ALPHAS,
                  batch_size: int = 128) -> dict:
    """Wise-FT (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models", Eq. 1) between two
    checkpoints of ONE run: ``θ(α) = (1 − α) θ_early + α θ_final`` for each ``α`` in ``alphas``.

    ``final`` is the trained model (θ_final, as trained, BatchNorm statistics included);
    ``early_state`` the state dict of the early checkpoint (θ_early, an epoch part-way through
    training, :func:`phasezoo.spec.wise_ft_early_epoch`). For ``α < 1`` the weights are mixed by
    :func:`average_state_dicts` and the BatchNorm running statistics recomputed on ``x_bn``
    (mixed statistics are not the mixed network's); ``θ(1)`` is the final model itself, so a
    choice of ``α = 1`` gains exactly 0.

    ``α*`` is chosen on the TRAIN split: the lowest train loss (the objective every task trains,
    the PINNs' PDE loss included, so no exact solution enters the choice), ties and non-finite
    losses going to the larger ``α``. The gain is ``score_test(θ(α*)) − score_test(θ_final)``,
    score = ``1 − error`` (:func:`phasezoo.tasks.score`).

    Returns ``{"alphas", "train_loss", "train_acc", "test_acc", "best_alpha", "acc", "final_acc",
    "gain"}``: the curve over α (lists in the order of ``alphas``) and the choice.
    """
    alphas = [float(a) for a in alphas]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas) or 1.0 not in alphas:
        raise ValueError(f"alphas must lie in [0, 1] and include 1, got {alphas}")
    final_state = final.state_dict()
    device = next(final.parameters()).device
    curve: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "test_acc": []}
    model = copy.deepcopy(final)
    for a in alphas:
        if a == 1.0:
            mixed = final
        else:
            model.load_state_dict(average_state_dicts([early_state, final_state], [1.0 - a, a]))
            recompute_bn_statistics(model, x_bn.to(device), batch_size=batch_size)
            mixed = model
        mixed.eval()
        tr = task.evaluate(mixed, *train, batch_size=batch_size)
        curve["train_loss"].append(float(tr["loss"]))
        curve["train_acc"].append(1.0 - float(tr["error"]))
        curve["test_acc"].append(1.0 - float(task.evaluate(mixed, *test, batch_size=batch_size)["error"]))

    def key(i: int) -> tuple[float, float]:  # lowest finite loss, then the larger α
        loss = curve["train_loss"][i]
        return (loss if math.isfinite(loss) else math.inf, -alphas[i])

    best = min(range(len(alphas)), key=key)
    final_acc = curve["test_acc"][alphas.index(1.0)]
    return {"alphas": alphas, **curve, "best_alpha": alphas[best], "acc": curve["test_acc"][best],
            "final_acc": final_acc, "gain": curve["test_acc"][best] - final_acc}


def rebasin_average(model_a: nn.Module, model_b: nn.Module, x_bn: torch.Tensor, *,
                    batch_size: int = 128, max_iter: int = 100, seed: int = 0) -> nn.Module:
    """Git re-basin midpoint: ``½ θ_a + ½ π(θ_b)``, BN statistics recomputed over ``x_bn``.

    ``π`` is found by weight matching (:func:`phasezoo.downstream.rebasin.align`, ``max_iter``,
    ``seed``); the average is :func:`phasezoo.downstream.rebasin.interpolate` at ``α = 0.5``; the
    BatchNorm running statistics are then recomputed from a full pass over ``x_bn``. Neither input
    is modified; returns a new model in eval mode.
    """
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
