"""The short SGD fits after training: pruning's fine-tune at fixed sparsity and transfer's
fine-tune on a target task (paper §4.2).

SGD with momentum and weight decay, the learning rate decayed from ``lr`` to 0 along a cosine
over all steps (stepped per batch), on the batches of :func:`phasezoo.data.train_batches` (one
shuffled pass an epoch, no 1-sample tail), so the step count is
``epochs · steps_per_epoch(len(x), batch_size)``, the rule every training loop shares. (The
members' loop, :mod:`phasezoo.train`, and the mode-connectivity curves,
:mod:`phasezoo.landscape.curves`, keep loops of their own — schedules, resumable state,
divergence checks — on the same batches.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from phasezoo.data import steps_per_epoch, train_batches

__all__ = ["sgd_cosine_fit"]


def sgd_cosine_fit(params: Iterable[torch.nn.Parameter],
                   batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, momentum: float,
                   weight_decay: float, batch_size: int, generator: torch.Generator,
                   augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                   after_step: Callable[[], None] | None = None,
                   on_epoch_start: Callable[[], object] | None = None) -> int:
    """Minimise ``batch_loss(xb, yb)`` over ``params`` for ``epochs`` passes (module docstring).

    ``augment(xb, generator)`` transforms each batch; ``after_step()`` runs after every
    optimiser step (pruning re-applies its masks there); ``on_epoch_start()`` before each pass
    (e.g. ``model.train``). Returns the number of steps taken."""
    params = list(params)
    total = epochs * steps_per_epoch(len(x), batch_size)
    if total == 0:
        return 0
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    steps = 0
    for _ in range(epochs):
        if on_epoch_start is not None:
            on_epoch_start()
        for xb, yb in train_batches(x, y, batch_size, generator=generator):
            if augment is not None:
                xb = augment(xb, generator)
            loss = batch_loss(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
            steps += 1
    return steps
