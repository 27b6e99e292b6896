"""Weight-space learning: predict model properties from weight statistics.

The probe of the paper's §5 / Table 1, after Unterthiner et al. (2020), "Predicting Neural
Network Accuracy from Weights": per-tensor statistics of a member's weights (mean, variance,
quantiles; :func:`weight_statistics`, :func:`zoo_features`) feed a standardised ridge
regression whose R² on held-out grid cells is reported per property (:func:`fit_probe`,
:func:`probe_properties`). :func:`probe_phase` classifies the phase label the same way.

Example::

    from pathlib import Path
    from phasezoo import zoo_table
    from phasezoo.wsl import zoo_features, probe_properties

    table = zoo_table("digits-resnet18", "mini", "data/zoos")
    dirs = [Path("data/zoos/digits-resnet18/mini") / m for m in table["member"]]
    feats = zoo_features(dirs, skip_missing=True)     # pending members have no checkpoint
    print(probe_properties(feats, table)[["r2_test", "n_train", "n_test", "note"]])
"""

from __future__ import annotations

from phasezoo.wsl.dataset import ZooDataset, collate_zoo
from phasezoo.wsl.features import weight_statistics, zoo_features
from phasezoo.wsl.probe import cell_of, fit_probe, probe_phase, probe_properties

__all__ = ["ZooDataset", "cell_of", "collate_zoo", "fit_probe", "probe_phase", "probe_properties", "weight_statistics",
           "zoo_features"]
