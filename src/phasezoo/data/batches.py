"""Mini-batches and fixed subsets of in-memory datasets: the one place that says which samples
a step, an evaluation or a metric sees.

* :func:`iterate_batches` — shuffled (seeded CPU generator) or in-order mini-batches covering
  every sample once;
* :func:`fixed_indices` / :func:`fixed_subset` — the first ``n`` of one fixed permutation
  (seed :data:`SUBSET_SEED`): every metric subset (Hessian, CKA) and evaluation subset is cut
  from it, so every model of a zoo is measured on the same samples;
* :func:`eval_split` — the samples a split is evaluated on (all, or OpenWebText's fixed
  ``max_eval`` blocks);
* :func:`train_batches` / :func:`steps_per_epoch` — the batches an optimiser steps on: a
  shuffled pass without a trailing batch below :data:`MIN_TRAIN_BATCH` (every loop that trains:
  the members, the mode-connectivity curves, pruning's and transfer's fine-tunes).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["MIN_TRAIN_BATCH", "SUBSET_SEED", "check_cpu_generator", "eval_split", "fixed_indices",
           "fixed_subset", "iterate_batches", "steps_per_epoch", "train_batches"]

#: seed of the fixed permutation every metric and evaluation subset is cut from
SUBSET_SEED = 0
#: the smallest batch an optimiser steps on: BatchNorm cannot normalise a single sample in train
#: mode when the last stage is 1×1 (8×8 digits), so a trailing 1-sample batch is dropped
MIN_TRAIN_BATCH = 2


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Optimiser steps in one pass of :func:`train_batches` over ``num_train`` samples."""
    full, rest = divmod(num_train, batch_size)
    return full + (1 if rest >= MIN_TRAIN_BATCH else 0)


def train_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                  generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled pass (:func:`iterate_batches`) without a trailing batch smaller than
    :data:`MIN_TRAIN_BATCH`: exactly :func:`steps_per_epoch` batches."""
    return (b for b in iterate_batches(x, y, batch_size, generator=generator) if len(b[1]) >= MIN_TRAIN_BATCH)


def check_cpu_generator(generator: torch.Generator) -> None:
    """Random draws (shuffles, augmentation) come from a CPU generator and are then moved to
    the data's device, so a seed gives the same batches on CPU and GPU."""
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("augmentation needs a CPU torch.Generator (random numbers are drawn on the CPU)")


def fixed_indices(total: int, n: int) -> torch.Tensor:
    """The first ``n`` entries of the fixed permutation of ``range(total)`` (seed
    :data:`SUBSET_SEED`) that every metric subset and evaluation subset is cut from."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(SUBSET_SEED))[: min(n, total)]


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a fixed permutation of the training set (same for every model)."""
    perm = fixed_indices(len(x), n).to(x.device)
    return x[perm], y[perm]


def eval_split(data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples a split is evaluated on: all of them, or for data with a ``max_eval``
    (OpenWebText) the first ``max_eval`` of a fixed permutation (the same in every epoch)."""
    x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
    limit = getattr(data, "max_eval", None)
    if limit is None or limit >= len(x):
        return x, y
    idx = fixed_indices(len(x), limit).sort().values  # in stream order
    return x[idx], y[idx]


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x[idx], y[idx])`` mini-batches covering every sample exactly once.

    ``shuffle=True``: the order is ``torch.randperm(N, generator=generator)`` drawn on the CPU
    (``generator`` a CPU generator, or None for torch's global one) and moved to the data's
    device. ``shuffle=False``: in order, as views (for evaluation). The last batch may be
    smaller than ``batch_size`` (no drop_last). Arguments are checked when called, not at the
    first ``next()``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    if shuffle and generator is not None:
        check_cpu_generator(generator)
    return _batches(x, y, batch_size, generator, shuffle)


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None, shuffle: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n = x.shape[0]
    if not shuffle:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    perm = torch.randperm(n, generator=generator)
    perm_x = perm.to(x.device)
    perm_y = perm_x if y.device == x.device else perm.to(y.device)
    for start in range(0, n, batch_size):
        yield x[perm_x[start : start + batch_size]], y[perm_y[start : start + batch_size]]
