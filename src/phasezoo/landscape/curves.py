"""Bézier-curve mode connectivity between two models (paper §2; Garipov et al. 2018).

Two models of the same architecture (two seeds of a grid cell), with parameters ``θ_a`` and
``θ_b``, are joined by the quadratic Bézier curve (Garipov et al. 2018, §3.1)::

    θ(t) = (1−t)² θ_a + 2t(1−t) θ_c + t² θ_b,        t ∈ [0, 1]

whose endpoints are fixed and whose middle control point ``θ_c`` is trained to minimise the
expected loss along the curve, ``E_{t~U(0,1)} L(θ(t))``: every SGD step draws one ``t`` and
takes a gradient step on ``L(θ(t))`` with respect to ``θ_c`` only. Every parameter is on the
curve, BatchNorm's affine weight and bias included; BatchNorm *buffers* (running statistics) are
not: during curve training BatchNorm runs in train mode (batch statistics), and before the model
at a given ``t`` is evaluated its running statistics are recomputed from one pass over the
training data (Garipov et al.'s ``update_bn``).

Mode connectivity (paper §2, after Yang et al. 2021), for a value ``v`` (train loss or error)::

    mc = (v(0) + v(1)) / 2 − v(t*),     t* = argmax_t |v(t) − (v(0) + v(1)) / 2|

``mc < 0``: a barrier between the two models; ``mc > 0``: the curve's middle is *better* than
its endpoints, i.e. the endpoints are under-trained; ``mc ≈ 0``: the models are connected.
(The paper prints ``argmin`` for ``t*``; that is a typo: with ``argmin`` mc would be ≈ 0 whenever
any t happens to match the endpoints' mean; the public implementations take the maximum.)

**Where this differs from the public code, and why**

* ``t*`` ranges over the *interior* evaluation points only (``0 < t < 1``). With the endpoints
  as candidates, a curve whose values simply rise from ``v(0)`` to ``v(1)`` would report
  ``mc = ±(v(1) − v(0))/2`` (whichever endpoint wins the tie), calling two unequally trained
  but perfectly connected models a "barrier". With interior points only a 3-point straight
  monotone profile gives ``mc = 0``. Note that the reference is still the endpoints' *mean*,
  not the chord: a straight monotone profile sampled at 5 points gives
  ``mc = ±|v(1) − v(0)|/4`` (ties go to the first interior point) — that is the paper's
  definition.
* ``θ_c`` is initialised on the straight line, ``(θ_a + θ_b)/2`` (Yang et al.'s code defined
  this initialisation but never called it). With that start the curve *is* the straight line
  ``(1−t)θ_a + tθ_b`` until training moves ``θ_c``; ``epochs=0`` therefore measures linear
  mode connectivity.
* The learning rate is a pure function of the step index (:func:`curve_lr`), assigned to the
  optimiser every step; PTMZ multiplied the rate by a decay factor repeatedly, compounding it.
* BatchNorm statistics are a cumulative average over one full pass, weighted by batch size
  (Garipov et al.'s ``update_bn``: per batch ``momentum = b/(seen + b)``), which is exactly the
  per-sample mean of the batch means whatever the size of the last batch (``momentum=None``
  would weight a short last batch like a full one).

**Defaults.** ``epochs=10`` (PTMZ's budget), ``lr=0.1`` (PTMZ's nominal rate, and the rate the
ResNet zoos train with), ``momentum=0.9``, ``weight_decay=0``, ``batch_size=128``,
``schedule="garipov"`` (constant for the first half, linear down to 1% of ``lr`` by 90% of the
steps, then constant; Garipov et al.'s curve schedule, here per step), ``num_t=5`` (PTMZ's
evaluation grid). Garipov et al. train curves for 600 epochs at lr 0.015 on CIFAR, far beyond a
zoo's budget; PTMZ's 10 epochs at lr 0.1 had its rate collapse within a few epochs through the
compounding decay. With a correct schedule, 10 epochs at 0.1 fitted the curve markedly better
than 0.05 or lower (less residual barrier) on digits ResNet-18s (widths 2 and 4) and small BN
convnets, without instability. A curve that is not fitted far enough biases mc towards a
barrier, so the budget should err on the side of fitting. The zoo runner passes explicit values
from the zoo spec; every value used is returned in ``settings``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from torch.func import functional_call

from phasezoo.data import steps_per_epoch, train_batches
from phasezoo.models.utils import batchnorms, recompute_bn_statistics
from phasezoo.tasks import as_batch_loss

#: learning-rate schedules understood by :func:`curve_lr`
SCHEDULES = ("garipov", "cosine", "constant")
#: the schedules end at this fraction of the base learning rate
LR_FLOOR = 0.01
BN_RECOMPUTE = "cumulative average over one pass of the train set, weighted by batch size"


# --------------------------------------------------------------------------- the mc value


def mode_connectivity_value(values: Sequence[float], reference: str = "mean") -> tuple[float, int]:
    """``(mc, index of t*)`` for values ``v`` at equally spaced ``t`` from ``t=0`` to ``t=1``.

    ``reference="mean"`` (the paper's definition): ``mc = (v[0] + v[-1])/2 − v[i*]`` with
    ``i* = argmax |v[i] − (v[0] + v[-1])/2|``. A barrier-free straight profile between unequal
    endpoints then gives ``±|v[-1] − v[0]|/4`` (5 points), its sign decided by rounding.

    ``reference="chord"``: each point is compared with the straight line between the endpoints,
    ``c[i] = (1 − t_i)·v[0] + t_i·v[-1]`` with ``t_i = i/(len−1)``, and
    ``mc = c[i*] − v[i*]`` with ``i* = argmax |c[i] − v[i]|``. A straight profile gives 0 whatever
    its endpoints; negative still means a barrier (the curve rises above the chord), positive a
    curve better than both ends' interpolation. Equal endpoints give the same value under both.

    ``i*`` ranges over the interior indices ``0 < i < len−1`` (first one on ties); see the module
    docstring for why the endpoints are not candidates. Needs at least 3 values. Any ``nan``
    makes mc undefined: ``(nan, -1)``; an infinite interior value (a blown-up model) gives
    ``mc = −inf``.

    >>> mode_connectivity_value([0.1, 0.5, 0.1])
    (-0.4, 1)
    >>> mode_connectivity_value([0.0, 0.25, 0.5, 0.75, 1.0], reference="chord")
    (0.0, 1)
    """
    if reference not in ("mean", "chord"):
        raise ValueError(f"reference must be 'mean' or 'chord', got {reference!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 3:
        raise ValueError(f"mode connectivity needs at least 3 values along the curve, got {len(v)}")
    if np.isnan(v).any():
        return math.nan, -1
    if reference == "mean":
        ref = np.full(len(v), (v[0] + v[-1]) / 2)
    else:
        t = np.linspace(0.0, 1.0, len(v))
        ref = (1 - t) * v[0] + t * v[-1]
    with np.errstate(invalid="ignore"):
        dev = np.abs(v[1:-1] - ref[1:-1])
    i = 1 + int(np.argmax(dev))
    return float(ref[i] - v[i]), i


# --------------------------------------------------------------------------- the lr schedule


def curve_lr(step: int, total_steps: int, lr: float, schedule: str = "garipov") -> float:
    """The learning rate of step ``step`` (0-based) of ``total_steps``: a pure function of the step.

    With ``a = step / (total_steps − 1)`` (the training progress, 0 at the first step and 1 at
    the last) and the floor ``f = LR_FLOOR = 0.01``:

    * ``garipov``: ``lr`` for ``a ≤ 0.5``; ``lr·(1 − (1−f)(a − 0.5)/0.4)`` for ``0.5 < a ≤ 0.9``;
      ``lr·f`` after (Garipov et al. 2018's curve schedule, per step instead of per epoch);
    * ``cosine``: ``lr·(f + (1 − f)(1 + cos πa)/2)``;
    * ``constant``: ``lr``.

    The last step runs at ``lr·f`` for ``garipov`` and ``cosine``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if total_steps < 1 or not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, {total_steps}), got {step}")
    a = step / (total_steps - 1) if total_steps > 1 else 1.0
    if schedule == "constant":
        factor = 1.0
    elif schedule == "cosine":
        factor = LR_FLOOR + (1 - LR_FLOOR) * (1 + math.cos(math.pi * a)) / 2
    elif a <= 0.5:
        factor = 1.0
    elif a <= 0.9:
        factor = 1.0 - (1 - LR_FLOOR) * (a - 0.5) / 0.4
    else:
        factor = LR_FLOOR
    return lr * factor


# --------------------------------------------------------------------------- the curve


def bezier_point(
    t: float,
    theta_a: dict[str, torch.Tensor],
    theta_c: dict[str, torch.Tensor],
    theta_b: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """``θ(t) = (1−t)² θ_a + 2t(1−t) θ_c + t² θ_b``, name by name (differentiable in ``θ_c``)."""
    wa, wc, wb = (1 - t) ** 2, 2 * t * (1 - t), t**2
    return {k: wa * theta_a[k] + wc * theta_c[k] + wb * theta_b[k] for k in theta_a}


class BezierCurve:
    """A quadratic Bézier curve in the parameter space of one architecture.

    Holds detached copies of the endpoint parameters ``theta_a``, ``theta_b`` and the trainable
    middle point ``theta_c`` (leaf tensors with ``requires_grad``, initialised at
    ``(θ_a + θ_b)/2``), plus a private deep copy of ``model_a`` used as the architecture
    template. Neither input model is modified or referenced afterwards.
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module, device: torch.device | str | None = None):
        if device is None:
            first = next(iter(model_a.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
        if list(pa) != list(pb) or any(pa[k].shape != pb[k].shape for k in pa):
            raise ValueError("model_a and model_b must have the same architecture "
                             "(same parameter names and shapes)")
        self.module = copy.deepcopy(model_a).to(self.device)
        self.theta_a = {k: v.detach().clone().to(self.device) for k, v in pa.items()}
        self.theta_b = {k: v.detach().clone().to(self.device) for k, v in pb.items()}
        self.theta_c = {k: ((self.theta_a[k] + self.theta_b[k]) / 2).requires_grad_(True)
                        for k in pa}
        # model_a's buffers (e.g. BatchNorm running stats): what a model on the curve starts from
        self.buffers_a = {k: v.detach().clone().to(self.device) for k, v in model_a.named_buffers()}

    def parameters_at(self, t: float) -> dict[str, torch.Tensor]:
        """θ(t), differentiable with respect to ``theta_c``."""
        return bezier_point(t, self.theta_a, self.theta_c, self.theta_b)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """The output of the model at θ(t) on ``x`` (the template's train/eval mode applies)."""
        return functional_call(self.module, self.parameters_at(t), (x,))

    @torch.no_grad()
    def model_at(self, t: float) -> nn.Module:
        """A standalone model with parameters θ(t) and ``model_a``'s buffers (no gradients)."""
        model = copy.deepcopy(self.module)
        params = self.parameters_at(t)
        for name, p in model.named_parameters():
            p.copy_(params[name])
        for name, b in model.named_buffers():
            b.copy_(self.buffers_a[name])
        return model


# --------------------------------------------------------------------------- BatchNorm


# --------------------------------------------------------------------------- the measurement


def _seeds(seed: int) -> tuple[int, int]:
    """(data-order seed, t seed): independent streams from one seed."""
    s_data, s_t = np.random.SeedSequence([seed, 0xC0FE]).generate_state(2)
    return int(s_data), int(s_t)


def train_curve(
    curve: BezierCurve,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    schedule: str = "garipov",
    optimizer: str = "sgd",
) -> dict[str, Any]:
    """Train ``curve.theta_c`` on ``E_t loss(θ(t))``: one ``t ~ U(0,1)`` per SGD step
    (``optimizer="adam"``: Adam steps, ``momentum`` unused).

    ``epochs`` passes over ``(x, y)`` in shuffled batches; the data order and the ``t`` draws
    come from two ``torch.Generator`` streams derived from ``seed``. The learning rate of step
    ``s`` is ``curve_lr(s, total_steps, lr, schedule)``, set on the optimiser before the step.
    A non-finite loss stops training before it can touch ``θ_c``.

    Returns ``{"train_loss_curve": per-epoch mean loss, "window_losses": the mean loss of each
    of :data:`WINDOWS` equal runs of consecutive steps (fewer if there are fewer steps),
    "steps": steps taken, "final_lr": the rate of the last step taken (None if none),
    "diverged_at_step": None or the step with a non-finite loss}``.
    """
    total = epochs * steps_per_epoch(len(x), batch_size)
    losses: list[float] = []
    step_losses: list[float] = []
    if total == 0:
        return {"train_loss_curve": losses, "window_losses": [], "steps": 0, "final_lr": None,
                "diverged_at_step": None}
    s_data, s_t = _seeds(seed)
    g_data = torch.Generator().manual_seed(s_data)
    g_t = torch.Generator().manual_seed(s_t)
    batch_loss = as_batch_loss(loss_fn)
    if optimizer == "adam":  # for ill-conditioned losses (PINNs), where SGD must crawl
        opt = torch.optim.Adam(list(curve.theta_c.values()), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(list(curve.theta_c.values()), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    curve.module.train()
    step, diverged, final_lr = 0, None, None
    for _ in range(epochs):
        loss_sum, seen = 0.0, 0
        for xb, yb in train_batches(x, y, batch_size, generator=g_data):
            t = float(torch.rand((), generator=g_t))
            for group in opt.param_groups:
                group["lr"] = curve_lr(step, total, lr, schedule)
            loss = batch_loss(lambda inp, t=t: curve(inp, t), xb, yb)
            if not torch.isfinite(loss):
                diverged = step
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            final_lr = opt.param_groups[0]["lr"]
            step += 1
            step_losses.append(float(loss.detach()))
            loss_sum += step_losses[-1] * len(yb)
            seen += len(yb)
        losses.append(loss_sum / seen if seen else math.nan)
        if diverged is not None:
            break
    return {"train_loss_curve": losses, "window_losses": window_means(step_losses), "steps": step,
            "final_lr": final_lr, "diverged_at_step": diverged}


#: the curve's per-step losses are summarised as the means of this many equal runs of steps
WINDOWS = 10
#: defaults of the convergence rule (:func:`curve_converged`)
PLATEAU_TOL = 0.1
MIN_STEPS = 200


def window_means(values: Sequence[float], windows: int = WINDOWS) -> list[float]:
    """Means of ``windows`` near-equal runs of consecutive ``values`` (fewer if fewer values)."""
    parts = np.array_split(np.asarray(values, dtype=np.float64), min(windows, len(values))) if len(values) else []
    return [float(p.mean()) for p in parts]


def curve_converged(window_losses: Sequence[float], steps: int, diverged_at_step: int | None, *,
                    plateau_tol: float = PLATEAU_TOL, min_steps: int = MIN_STEPS) -> tuple[bool, str]:
    """Whether a curve's training has plateaued, and why not: ``(converged, reason)``.

    ``window_losses`` are the mean training losses of the tenths of the curve's steps
    (:func:`window_means`; each loss at its own random t). Converged when training did not
    diverge, took at least ``min_steps`` steps, and the loss fell over the last fifth of the
    steps (``w[-3] − w[-1]``) by at most ``plateau_tol`` of its whole fall (``w[0] − w[-1]``):
    at most 10% of the progress came in the last fifth. The whole fall is the scale, not the
    loss itself, because a fitted curve's loss is small (0.01-0.05 on digits) and its window means
    move by 10-40% relatively from the random t alone. An unconverged curve over-states the
    barrier (an untrained curve is close to the straight line), so its mc is not used for a
    phase label.
    """
    if diverged_at_step is not None:
        return False, f"diverged at step {diverged_at_step}"
    if steps < min_steps:
        return False, f"{steps} steps < {min_steps}"
    if len(window_losses) < 3:
        return False, "too few steps to compare windows"
    w = window_losses
    total, last = w[0] - w[-1], w[-3] - w[-1]
    if last > plateau_tol * max(total, 0.0):
        share = f"{last / total:.0%} of its fall" if total > 0 else "while it rose overall"
        return False, f"loss still falling: {share} in the last fifth > {plateau_tol:.0%}"
    return True, (f"{max(last, 0) / total:.0%} of its fall in the last fifth" if total > 0
                  else "no fall in training")


def bezier_mode_connectivity(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    evaluate: Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, float]],
    epochs: int = 10,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    num_t: int = 5,
    seed: int = 0,
    schedule: str = "garipov",
    optimizer: str = "sgd",
    bn_batch_size: int | None = None,
    device: torch.device | str | None = None,
    return_curve: bool = False,
    eval_x: torch.Tensor | None = None,
    eval_y: torch.Tensor | None = None,
    plateau_tol: float = PLATEAU_TOL,
    min_steps: int = MIN_STEPS,
) -> dict[str, Any]:
    """Fit a quadratic Bézier curve between two models and measure its mode connectivity.

    ``(x, y)`` is the training set: the curve is trained on it (:func:`train_curve`, with
    ``loss_fn(outputs, targets)``, e.g. ``ClassificationTask().loss``) and evaluated on it, as
    the paper computes landscape metrics on training data. Then for each ``t`` in
    ``linspace(0, 1, num_t)`` the model at ``θ(t)`` gets its BatchNorm statistics recomputed
    (:func:`recompute_bn_statistics`, batches of ``bn_batch_size``, default ``batch_size``: the
    batch statistics the curve was trained with) and is evaluated in eval mode by
    ``evaluate(model, x, y)``, which must return at least ``"loss"`` and ``"error"`` (e.g.
    ``ClassificationTask().evaluate``). ``mc_error`` and ``mc_loss`` come from
    :func:`mode_connectivity_value`.

    ``eval_x, eval_y`` (default: ``x, y``) are the samples the curve is evaluated on (BatchNorm
    statistics are always recomputed from ``x``): e.g. the language zoos' fixed evaluation
    subset of the training set, while the curve trains on all of it.

    ``model_a`` and ``model_b`` are never modified. The same arguments give the same result
    (on the same device). ``device`` defaults to ``model_a``'s. With ``return_curve=True`` the
    trained :class:`BezierCurve` is added under ``"curve"``.

    Returns ``{"mc_error", "mc_loss", "mc_error_chord", "mc_loss_chord", "t", "loss", "error",
    "t_star_error", "t_star_loss", "settings", "train_loss_curve", "diverged_at_step",
    "diagnostics"}``. ``diagnostics``: the loss at t = 0.5 before training (the straight line's
    midpoint) and after, the endpoints' losses, the curve's training loss over its last window
    of steps, the window means, and ``converged`` / ``convergence`` from :func:`curve_converged`.
    """
    if isinstance(num_t, bool) or not isinstance(num_t, int) or num_t < 3:
        raise ValueError(f"num_t must be an integer >= 3 (endpoints plus an interior point), got {num_t!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if lr < 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a finite non-negative number, got {lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    bn_batch_size = batch_size if bn_batch_size is None else bn_batch_size
    curve = BezierCurve(model_a, model_b, device)
    x, y = x.to(curve.device), y.to(curve.device)
    ex = x if eval_x is None else eval_x.to(curve.device)
    ey = y if eval_y is None else eval_y.to(curve.device)

    def evaluate_at(t: float) -> dict[str, float]:
        model = curve.model_at(t)
        recompute_bn_statistics(model, x, batch_size=bn_batch_size)
        model.eval()
        return evaluate(model, ex, ey)

    mid_before = float(evaluate_at(0.5)["loss"])  # the straight line's midpoint: θ_c starts at (a+b)/2
    fit = train_curve(curve, x, y, loss_fn=loss_fn, epochs=epochs, lr=lr, momentum=momentum,
                      weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                      schedule=schedule, optimizer=optimizer)

    ts = [float(t) for t in np.linspace(0.0, 1.0, num_t)]
    losses, errors = [], []
    bn_recomputed = bool(batchnorms(curve.module))
    for t in ts:
        res = evaluate_at(t)
        losses.append(float(res["loss"]))
        errors.append(float(res["error"]))
    mid_after = losses[ts.index(0.5)] if 0.5 in ts else float(evaluate_at(0.5)["loss"])
    converged, why = curve_converged(fit["window_losses"], fit["steps"], fit["diverged_at_step"],
                                     plateau_tol=plateau_tol, min_steps=min_steps)
    mc_error, i_err = mode_connectivity_value(errors)
    mc_loss, i_loss = mode_connectivity_value(losses)
    result: dict[str, Any] = {
        "mc_error": mc_error,
        "mc_loss": mc_loss,
        # referenced to the chord between the endpoints instead of their mean (see
        # mode_connectivity_value); the paper's values above stay the defaults
        "mc_error_chord": mode_connectivity_value(errors, reference="chord")[0],
        "mc_loss_chord": mode_connectivity_value(losses, reference="chord")[0],
        "t": ts,
        "loss": losses,
        "error": errors,
        "t_star_error": ts[i_err] if i_err >= 0 else math.nan,
        "t_star_loss": ts[i_loss] if i_loss >= 0 else math.nan,
        "settings": {
            "curve": "quadratic Bezier, endpoints fixed, middle initialised at (a+b)/2",
            "epochs": epochs,
            "lr": lr,
            "optimizer": optimizer,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "num_t": num_t,
            "seed": seed,
            "schedule": schedule,
            "lr_floor": LR_FLOOR,
            "steps": fit["steps"],
            "final_lr": fit["final_lr"],
            "t_sampling": "one t ~ U(0,1) per step",
            "t_star": "interior evaluation points only",
            "bn_recompute": BN_RECOMPUTE if bn_recomputed else "none (no BatchNorm)",
            "bn_batch_size": bn_batch_size,
            "num_samples": len(x),
            "num_eval_samples": len(ex),
            "plateau_tol": plateau_tol,
            "min_steps": min_steps,
        },
        "train_loss_curve": fit["train_loss_curve"],
        "diverged_at_step": fit["diverged_at_step"],
        "diagnostics": {
            "loss_mid_before": mid_before,
            "loss_mid_after": mid_after,
            "loss_endpoints": [losses[0], losses[-1]],
            "curve_loss_end": fit["window_losses"][-1] if fit["window_losses"] else math.nan,
            "window_losses": fit["window_losses"],
            "converged": converged,
            "convergence": why,
        },
    }
    if return_curve:
        result["curve"] = curve
    return result


__all__ = [
    "BN_RECOMPUTE",
    "LR_FLOOR",
    "MIN_STEPS",
    "PLATEAU_TOL",
    "SCHEDULES",
    "BezierCurve",
    "bezier_mode_connectivity",
    "bezier_point",
    "curve_converged",
    "curve_lr",
    "mode_connectivity_value",
    "train_curve",
    "window_means",
]
