"""Global magnitude pruning, with an optional short fine-tune at fixed sparsity (paper §4.2).

Prunable weights are the ``weight`` tensors of every :class:`~torch.nn.Conv2d`,
:class:`~torch.nn.Linear` and :class:`~torch.nn.Embedding` layer (conv kernels, weight
matrices, the classifier, embedding tables). A GPT's token embedding is also its output head
(tied, :mod:`phasezoo.models.gpt`): one tensor, pruned once, for both uses. In a small GPT the
embeddings are most of the weights (text-gpt mini at model_dim 16: the 256 × 16 token and 64 × 16
position tables are 5,120 of the 11,264 matrix entries), so ``embeddings=False`` prunes the
Conv2d / Linear weights only, for comparison (the downstream runner stores both for models with
embeddings). Biases, normalisation parameters and statistics, and a ViT's class token and
position embedding (plain parameters, ~1% of its weights) are never pruned.

Global magnitude pruning at sparsity ``s`` ranks the entries of all prunable weights *together*
(not per layer) by ``|w|`` and zeroes the ``k = round(s · N)`` smallest, ``N`` being the total
number of prunable entries::

    order = stable_argsort(|concat_ℓ vec(W_ℓ)|)          (ascending; ties: earlier entry first)
    mask[order[:k]] = 0,   mask[order[k:]] = 1,   W_ℓ ← W_ℓ ⊙ mask_ℓ

The concatenation follows ``model.named_modules()`` order, so ties (e.g. weights that are already
exactly zero) are broken deterministically and exactly ``k`` entries are zero afterwards
(:func:`sparsity_of` = ``k / N``). :func:`prune_and_finetune` then trains for a few epochs and
re-applies the mask after every optimiser step, so the sparsity stays exactly ``k / N``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from phasezoo.fit import sgd_cosine_fit
from phasezoo.tasks import ClassificationTask

__all__ = ["PAPER_SPARSITIES", "apply_masks", "has_embeddings", "magnitude_prune", "prunable_weights",
           "prune_and_finetune", "sparsity_of"]

#: The sparsities evaluated in the paper (§4.2).
PAPER_SPARSITIES = (0.5, 0.7, 0.9, 0.95, 0.99)


def prunable_weights(model: nn.Module, *, embeddings: bool = True) -> dict[str, nn.Parameter]:
    """``{"<module>.weight": parameter}`` of every Conv2d / Linear (and, with ``embeddings``,
    Embedding) layer, in module order."""
    kinds = (nn.Conv2d, nn.Linear, nn.Embedding) if embeddings else (nn.Conv2d, nn.Linear)
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, kinds)}


def has_embeddings(model: nn.Module) -> bool:
    """Whether ``model`` has an embedding table (whether ``embeddings`` changes what is pruned)."""
    return any(isinstance(m, nn.Embedding) for m in model.modules())


def sparsity_of(model: nn.Module, *, embeddings: bool = True) -> float:
    """Fraction of exactly-zero entries among the prunable weights (:func:`prunable_weights`)."""
    ws = prunable_weights(model, embeddings=embeddings).values()
    total = sum(w.numel() for w in ws)
    zeros = sum(int((w == 0).sum()) for w in ws)
    return zeros / total if total else 0.0


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Multiply each weight named in ``masks`` by its mask (bool, True = kept), in place."""
    weights = prunable_weights(model, embeddings=True)
    for k, m in masks.items():
        weights[k].mul_(m.to(weights[k].device, weights[k].dtype))


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, *,
                    embeddings: bool = True) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Global magnitude pruning of a deep copy of ``model``: returns ``(pruned_copy, masks)``.

    Exactly ``round(sparsity · N)`` of the ``N`` prunable weight entries
    (:func:`prunable_weights` with ``embeddings``) — the smallest in ``|w|`` over all layers
    together, ties broken by a stable sort — are set to zero. ``masks``
    maps ``"<module>.weight"`` to a bool tensor of the weight's shape (True = kept). The input
    model is not modified; biases and BatchNorm are untouched.
    """
    sparsity = float(sparsity)
    if not 0.0 <= sparsity <= 1.0 or math.isnan(sparsity):
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    new = copy.deepcopy(model)
    weights = prunable_weights(new, embeddings=embeddings)
    if not weights:
        raise ValueError(f"{type(model).__name__} has no Conv2d/Linear/Embedding weights to prune")
    flat = torch.cat([w.detach().abs().flatten().cpu() for w in weights.values()])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:k]] = False
    masks, start = {}, 0
    for name, w in weights.items():
        n = w.numel()
        masks[name] = keep[start:start + n].view_as(w).to(w.device)
        start += n
    apply_masks(new, masks)
    return new, masks


def prune_and_finetune(
    model: nn.Module,
    sparsity: float,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    task=None,
    augment=None,
    embeddings: bool = True,
) -> nn.Module:
    """Prune a copy of ``model`` (:func:`magnitude_prune`, ``embeddings`` as there) and fine-tune
    it with the mask fixed.

    SGD (``momentum``, ``weight_decay``) with a cosine decay of ``lr`` to 0 over all steps
    (stepped per batch), mini-batches of ``(x, y)`` shuffled by a CPU generator seeded with
    ``seed``, optional ``augment`` (a :class:`phasezoo.data.BatchAugment`); ``task`` defaults to
    :class:`phasezoo.tasks.ClassificationTask`. After every optimiser step the mask is re-applied,
    so the returned model (eval mode) has exactly the sparsity of :func:`magnitude_prune`. Its
    masks are attached as ``model.prune_masks``. ``epochs=0`` returns the pruned model untouched.
    """
    task = task or ClassificationTask()
    pruned, masks = magnitude_prune(model, sparsity, embeddings=embeddings)
    device = next(pruned.parameters()).device
    x, y = x.to(device), y.to(device)
    if epochs > 0:
        pruned.train()
        sgd_cosine_fit(pruned.parameters(), lambda xb, yb: task.batch_loss(pruned, xb, yb), x, y,
                       epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
                       batch_size=batch_size, generator=torch.Generator().manual_seed(seed),
                       augment=augment, after_step=lambda: apply_masks(pruned, masks))
    pruned.eval()
    pruned.prune_masks = masks
    return pruned
