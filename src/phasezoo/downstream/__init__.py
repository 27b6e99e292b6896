"""Downstream analyses of trained zoos.

* :mod:`.rebasin` — permutation alignment by weight matching (git re-basin, Ainsworth et al.
  2022), with the residual stream permuted; :func:`align`, :func:`permute`, :func:`interpolate`.

Importing this package is cheap; the functions import torch (and scipy) on first use.
"""

from __future__ import annotations

_LAZY = {
    "align": "rebasin", "interpolate": "rebasin", "permute": "rebasin",
    "permutation_groups": "rebasin", "random_permutations": "rebasin", "weight_matching": "rebasin",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"phasezoo.downstream.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'phasezoo.downstream' has no attribute {name!r}")
