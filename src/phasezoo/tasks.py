"""Tasks: what a model's outputs are scored against.

A task supplies the training loss of a batch and the evaluation of a model on a whole split.
The training loop and the metrics code only ever call these two, so a new domain (language
modelling, PDEs) plugs in by adding a task here, never by copying the loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from phasezoo.errors import SpecError


class ClassificationTask:
    """Cross-entropy classification; error = 1 − accuracy."""

    name = "classification"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a batch."""
        return F.cross_entropy(outputs, targets)

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
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size])
            yb = y[i : i + batch_size]
            loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
            correct += (out.argmax(1) == yb).sum()
        model.train(was_training)
        n = len(x)
        accuracy = float(correct) / n
        return {"loss": float(loss_sum) / n, "accuracy": accuracy, "error": 1.0 - accuracy}


TASKS = {"classification": ClassificationTask}


def get_task(name: str) -> ClassificationTask:
    if name not in TASKS:
        raise SpecError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]()
