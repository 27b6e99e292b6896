"""Tasks: what a model's outputs are scored against, for each of the paper's three domains.

A task supplies

* ``batch_loss(forward, x, y)`` — the training loss of a batch, given a *forward function*
  (the model, a model at a point of a Bézier curve, a functional call in the Hessian code);
  a PDE loss needs derivatives of the outputs with respect to the inputs, so the task, not the
  caller, decides how the forward function is applied;
* ``evaluate(model, x, y)`` — the mean loss, ``error`` and task-specific scores over a split;
* ``outputs(model, x)`` — the outputs compared by CKA (paper §2: logits; for language models
  the next-token logits at the last position; for PINNs the predicted solution);
* ``per_sample_mean`` — whether the loss is a mean of independent per-sample losses (then the
  Hessian-vector products may regroup samples freely, see :mod:`phasezoo.landscape.hvp`).

The training loop, the metrics and the downstream methods only ever call these, so a domain
plugs in here and never copies a loop. :func:`task_for` builds the task of a member config.

Error (what mode connectivity is measured on, paper §2 and Figure 16):

* classification: ``1 − accuracy``;
* language modelling: ``1 − next-token accuracy`` (the paper measures GPT-2's mode connectivity
  on the loss; both are stored and the zoo spec picks one);
* PDE: the relative L2 error ``‖u − u*‖₂ / ‖u*‖₂`` against the exact solution ``u*``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.errors import SpecError
from phasezoo.models.utils import eval_mode

Forward = Callable[[torch.Tensor], torch.Tensor]


def takes_forward(fn):
    """Mark a loss as ``fn(forward, x, y)`` (a task's ``batch_loss``) rather than
    ``fn(outputs, targets)``; see :func:`as_batch_loss`."""
    fn.takes_forward = True
    return fn


def as_batch_loss(loss_fn: Callable) -> Callable[[Forward, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Accept either loss convention and return one taking ``(forward, x, y)``.

    ``loss_fn(outputs, targets)`` (e.g. ``F.cross_entropy``) becomes
    ``lambda forward, x, y: loss_fn(forward(x), y)``; a task's ``batch_loss`` is returned as is.
    """
    if getattr(loss_fn, "takes_forward", False):
        return loss_fn
    return lambda forward, x, y: loss_fn(forward(x), y)


def score(task, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """A model's score on ``(x, y)``: ``1 − error`` of the task, i.e. accuracy for
    classification, next-token accuracy for language models, ``1 −`` relative L2 error for
    PINNs (what the downstream methods compare)."""
    return 1.0 - task.evaluate(model, x, y)["error"]


class ClassificationTask:
    """Cross-entropy classification; error = 1 − accuracy."""

    name = "classification"
    per_sample_mean = True
    #: score keys -> short names used in results rows (``train_acc``, ``test_acc``)
    row_names = {"loss": "loss", "accuracy": "acc", "error": "error"}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a batch."""
        return F.cross_entropy(outputs, targets)

    @takes_forward
    def batch_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(forward(x), y)

    @torch.no_grad()
    def outputs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes), model as it is (callers set eval mode)."""
        return model(x)

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
    ) -> dict[str, float]:
        """Mean loss, accuracy and error (1 − accuracy) over all of ``(x, y)``, model in eval mode.

        ``loss`` and ``error`` are the two quantities every task reports (mode connectivity is
        measured on both); ``accuracy`` is specific to classification.

        The mode is restored afterwards. Sums are accumulated per sample, so the result does not
        depend on ``batch_size``.
        """
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        with eval_mode(model):
            for i in range(0, len(x), batch_size):
                out = model(x[i : i + batch_size])
                yb = y[i : i + batch_size]
                loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
                correct += (out.argmax(1) == yb).sum()
        n = len(x)
        accuracy = float(correct) / n
        return {"loss": float(loss_sum) / n, "accuracy": accuracy, "error": 1.0 - accuracy}


class LanguageModelTask:
    """Next-token prediction (nanoGPT): token-mean cross-entropy over blocks ``(B, T)``.

    ``x`` holds blocks of tokens and ``y`` the same blocks shifted by one. Every block has the
    same length, so the token mean of a batch is the mean of per-block means
    (``per_sample_mean``). Scores: loss (nats per token), ``perplexity = exp(loss)``,
    next-token ``accuracy`` and ``error = 1 − accuracy``.
    """

    name = "language_modelling"
    per_sample_mean = True
    row_names = {"loss": "loss", "perplexity": "ppl", "accuracy": "acc", "error": "error"}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(0, -2), targets.reshape(-1).long())

    @takes_forward
    def batch_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(forward(x), y)

    @torch.no_grad()
    def outputs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits at the last position of each block (N, vocab): one prediction per
        block keeps CKA's Gram matrices small for a 50k vocabulary."""
        return model(x)[:, -1, :]

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64
    ) -> dict[str, float]:
        # Logits are (rows, T, vocab): cap a batch at ~2^26 logits (256 MB in float32).
        vocab = model.wte.num_embeddings if hasattr(model, "wte") else 1024
        batch_size = max(1, min(batch_size, 2**26 // (x.shape[1] * vocab)))
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        with eval_mode(model):
            for i in range(0, len(x), batch_size):
                out = model(x[i : i + batch_size])
                yb = y[i : i + batch_size].long().to(out.device)
                loss_sum += F.cross_entropy(out.flatten(0, -2), yb.reshape(-1), reduction="sum").double()
                correct += (out.argmax(-1) == yb).sum()
        n = y.numel()
        loss = float(loss_sum) / n
        accuracy = float(correct) / n
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": accuracy,
                "error": 1.0 - accuracy}


class ConvectionTask:
    """The PINN objective for 1D convection ``u_t + β u_x = 0`` (Krishnapriyan et al. 2021).

    Domain ``x ∈ [0, 2π)``, ``t ∈ [0, 1]``; initial condition ``u(x, 0) = sin x``; periodic
    boundary ``u(0, t) = u(2π, t)``; exact solution ``u*(x, t) = sin(x − β t)``.

    Each row of ``x`` is a point ``(x, t)``; column 0 of ``y`` says what the point is for
    (:mod:`phasezoo.data.convection`): ``0`` initial (target ``y[:, 1] = sin x``),
    ``1`` boundary (the point ``(0, t)``, compared with ``(2π, t)``), ``2`` residual
    (collocation point), ``3`` evaluation only (test grid). The loss of a batch is

        L = mean_init (u − u₀)² + mean_bound (u(0,t) − u(2π,t))² + mean_res (u_t + β u_x)²
            + mean_eval (u − u*)²

    over the kinds present in the batch (an empty kind contributes nothing). The three PINN
    terms are the paper's "initial, boundary and residual losses" (MSE, Table 4); the last
    term only appears on the test grid, where the test loss is then the MSE to the exact
    solution. Because the loss is a sum of per-kind means, it is not a per-sample mean.
    """

    name = "pde_convection"
    per_sample_mean = False
    row_names = {"loss": "loss", "error": "error"}

    INITIAL, BOUNDARY, RESIDUAL, EVAL = 0, 1, 2, 3

    def __init__(self, beta: float):
        self.beta = float(beta)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """``u*(x, t) = sin(x − β t)`` at rows ``(x, t)``, shape (N, 1)."""
        return torch.sin(x[:, :1] - self.beta * x[:, 1:2])

    @takes_forward
    def batch_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kind = y[:, 0]
        total = x.new_zeros(())
        init, bound, res, ev = (kind == k for k in (self.INITIAL, self.BOUNDARY, self.RESIDUAL, self.EVAL))
        if init.any():
            total = total + (forward(x[init]) - y[init, 1:2]).pow(2).mean()
        if bound.any():
            xb = x[bound]
            shift = torch.tensor([2 * math.pi, 0.0], dtype=x.dtype, device=x.device)
            total = total + (forward(xb) - forward(xb + shift)).pow(2).mean()
        if res.any():
            total = total + self.residual(forward, x[res]).pow(2).mean()
        if ev.any():
            total = total + (forward(x[ev]) - self.exact(x[ev])).pow(2).mean()
        return total

    def residual(self, forward: Forward, x: torch.Tensor) -> torch.Tensor:
        """``u_t + β u_x`` at the rows of ``x``, by autograd (graph kept for training)."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            u = forward(xr)
            (g,) = torch.autograd.grad(u.sum(), xr, create_graph=True)
        return g[:, 1:2] + self.beta * g[:, 0:1]

    @torch.no_grad()
    def outputs(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The predicted solution ``u`` (N, 1)."""
        return model(x)

    def evaluate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int | None = None
    ) -> dict[str, float]:
        """PDE loss (above) and relative L2 error against the exact solution over all rows.

        The residual needs input gradients, so this runs with autograd on (no parameter
        gradients are kept). ``batch_size`` is accepted for interface compatibility; the whole
        split is one batch (the loss is a sum of per-kind means).
        """
        with eval_mode(model), torch.enable_grad():
            loss = float(self.batch_loss(model, x, y).detach())
            with torch.no_grad():
                u = model(x)
                ref = self.exact(x)
                err = float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))
        return {"loss": loss, "error": err}


#: task name -> the dataset kind it trains on (phasezoo.data.DatasetInfo.kind)
TASK_DATA_KIND = {"classification": "vision", "language_modelling": "text", "pde_convection": "pde"}
TASKS = {"classification": ClassificationTask, "language_modelling": LanguageModelTask,
         "pde_convection": ConvectionTask}


def get_task(name: str, **params: Any):
    """A task by name; ``pde_convection`` needs ``beta``."""
    if name not in TASKS:
        raise SpecError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    if name == "pde_convection":
        if params.get("beta") is None:
            raise SpecError("task pde_convection needs the convection coefficient beta")
        return ConvectionTask(params["beta"])
    return TASKS[name]()


def task_for(config: Mapping[str, Any]):
    """The task of a member config (``MemberSpec.to_dict()`` / ``config.json``)."""
    return get_task(config["task"], beta=config.get("beta"))


def row_scores(task, scores: Mapping[str, float], split: str) -> dict[str, float]:
    """``{"loss": .., "accuracy": ..}`` -> ``{"train_loss": .., "train_acc": ..}``."""
    return {f"{split}_{task.row_names[k]}": float(v) for k, v in scores.items() if k in task.row_names}
