"""Loss-landscape metrics (paper §2) and the phase taxonomy built on them.

* :mod:`.hessian` — top eigenvalue (power iteration) and trace (Hutchinson) of the train loss;
* :mod:`.cka` — linear CKA of two models' outputs, pooled or per batch;
* :mod:`.curves` — Bézier-curve mode connectivity between two seeds;
* :mod:`.phases` — the five phases of Yang et al. (2021), explicit thresholds, sensitivity.
"""

from phasezoo.landscape.phases import (DEFAULT_THRESHOLDS, PHASES, PhaseThresholds, classify_cell,
                                       classify_cells, threshold_sensitivity)

__all__ = ["DEFAULT_THRESHOLDS", "PHASES", "PhaseThresholds", "classify_cell", "classify_cells",
           "threshold_sensitivity"]
