"""Downstream analyses of trained zoos.

* :mod:`.rebasin` — permutation alignment by weight matching (git re-basin, Ainsworth et al.
  2022), with the residual stream permuted; :func:`align`, :func:`permute`, :func:`interpolate`.
* :mod:`.prune` — global magnitude pruning (:func:`magnitude_prune`, :func:`prune_and_finetune`),
  embedding tables included or left out (:func:`has_embeddings`).
* :mod:`.ensemble` — logit-averaging ensembles (:func:`ensemble_logits`, :func:`ensemble_accuracy`).
* :mod:`.average` — weight averaging: Wise-FT between an early checkpoint and the final model of
  a run, and git re-basin averages of two runs (:func:`wise_ft_curve`, :func:`rebasin_average`).
* :mod:`.finetune` — transfer to a target task, full fine-tuning or linear probe
  (:func:`.finetune.finetune`, exported here as ``finetune_model`` because the name
  ``phasezoo.downstream.finetune`` is the submodule), :func:`target_task`.

Importing this package is cheap; the functions import torch (and scipy) on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "align": "rebasin", "interpolate": "rebasin", "permute": "rebasin",
    "permutation_groups": "rebasin", "random_permutations": "rebasin", "weight_matching": "rebasin",
    "PAPER_SPARSITIES": "prune", "apply_masks": "prune", "magnitude_prune": "prune",
    "prunable_weights": "prune", "prune_and_finetune": "prune", "sparsity_of": "prune",
    "has_embeddings": "prune",
    "ensemble_accuracy": "ensemble", "ensemble_logits": "ensemble",
    "average_state_dicts": "average", "averaging_gain": "average", "rebasin_average": "average",
    "wise_ft_curve": "average", "WISE_FT_ALPHAS": "average",
    "TARGET_TASKS": "finetune", "TargetTask": "finetune", "finetune_model": "finetune",
    "target_task": "finetune",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"phasezoo.downstream.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'phasezoo.downstream' has no attribute {name!r}")
