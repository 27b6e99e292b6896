"""Loss-landscape metrics (paper §2) and the phase taxonomy built on them.

* :mod:`.hvp` — Hessian-vector products of the train loss (the operator the estimators use);
* :mod:`.hessian` — top eigenvalue (Lanczos, power iteration) and trace (Hutch++, Hutchinson) of
  the train loss;
* :mod:`.cka` — linear CKA of two models' outputs, pooled or per batch;
* :mod:`.curves` — Bézier-curve mode connectivity between two seeds;
* :mod:`.phases` — the five phases of Yang et al. (2021), explicit thresholds, sensitivity;
* :mod:`.runner` — computes a zoo's metrics resumably, stores them and joins them onto its table
  (``phasezoo metrics``).

Importing this package loads the phase code only; the metric functions import torch on first use.
The runner is never imported here: it sits above the store and the zoo, and the spec (below
them) imports the phase code through this package.
"""

from __future__ import annotations

import importlib

from phasezoo.landscape.phases import (DEFAULT_THRESHOLDS, PHASES, PhaseThresholds, classify_cell,
                                       classify_cells, threshold_sensitivity)

_LAZY = {
    "top_eigenvalue": "hessian",
    "trace": "hessian", "HessianEstimate": "hessian",
    "linear_cka": "cka", "output_cka": "cka", "cell_cka": "cka",
    "bezier_mode_connectivity": "curves", "mode_connectivity_value": "curves",
}

__all__ = ["DEFAULT_THRESHOLDS", "PHASES", "PhaseThresholds", "classify_cell", "classify_cells",
           "threshold_sensitivity", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"phasezoo.landscape.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'phasezoo.landscape' has no attribute {name!r}")
