"""The phase map over training: a zoo's phases at every epoch its loss-landscape metrics were
measured at (``phasezoo metrics --epochs 5,10,last``, or a profile's ``metrics.epochs``).

The paper annotates a subset of epochs with these metrics; a phase is a property of a model at
an epoch, not of its hyper-parameters alone. Each measured epoch is read two ways:

* ``phase``: that epoch's own phase map, its thresholds calibrated on that epoch's grid by the
  one rule of :mod:`phasezoo.landscape.phases` (the map ``phasezoo metrics`` stores in
  ``phases.json``);
* ``phase_fixed``: the same measurements classified with the thresholds of a reference epoch
  (default: the final one), held fixed.

Both are needed because the calibration is relative to the grid: ``τ_loss`` is the geometric
midpoint between the loss at initialisation and the best cell's loss *at that epoch*, and
``τ_trace`` / ``τ_cka`` split that epoch's cells in two. Under its own calibration an early grid
in which no model has fitted yet still has "fitted" cells. With the reference thresholds fixed,
a cell changes label only because its own measurements changed: that is the reading of "how the
phase map moves over training"; the own calibration says where each epoch's grid splits.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from phasezoo.analysis.table import zoo_table
from phasezoo.errors import PhaseZooError
from phasezoo.landscape.phases import LABELS
from phasezoo.landscape.runner import measured_epochs, resolve_epoch, zoo_phase_map
from phasezoo.spec import ZooSpec
from phasezoo.zoo import DEFAULT_ROOT, Zoo

__all__ = ["phase_history", "phase_history_summary"]

#: the per-cell measurements a history row carries besides its labels (those present)
HISTORY_COLUMNS = ("train_loss", "test_acc", "test_error", "hessian_trace", "cka",
                   "mc_error_chord", "mc_loss_chord", "mc_error", "mc_loss")


def phase_history(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT,
                  *, epochs: list[int | str] | None = None, reference: int | str = "last") -> pd.DataFrame:
    """One row per (measured epoch, grid cell): the load and temperature values, ``epoch``,
    ``phase`` / ``phase_confidence`` (that epoch's own calibration), ``phase_fixed`` /
    ``phase_fixed_confidence`` (the ``reference`` epoch's thresholds), and the cell's seed means
    of :data:`HISTORY_COLUMNS`. ``epochs``: default every measured epoch
    (:func:`phasezoo.landscape.runner.measured_epochs`). The thresholds used are in
    ``df.attrs["thresholds"]`` (epoch -> own thresholds) and ``df.attrs["reference"]``."""
    z = Zoo.of(zoo, profile, root)
    eps = measured_epochs(z) if epochs is None else sorted({resolve_epoch(z, e) for e in epochs})
    ref = resolve_epoch(z, reference)
    if not eps:
        raise PhaseZooError(f"{z.name}/{z.profile} under {z.root} has no metrics yet: run phasezoo metrics")
    if ref not in measured_epochs(z):
        raise PhaseZooError(f"{z.name}/{z.profile} has no metrics at the reference epoch {ref}")
    tables = {e: zoo_table(z, epoch=e, phases=False) for e in {*eps, ref}}
    fixed = zoo_phase_map(z, epoch=ref, members=tables[ref]).thresholds
    load, temp = z.load_axis, z.temperature_axis
    rows, own = [], {}
    for e in eps:
        pm = zoo_phase_map(z, epoch=e, members=tables[e])
        pf = zoo_phase_map(z, epoch=e, members=tables[e], thresholds=fixed)
        own[e] = pm.thresholds.to_dict()
        cols = [c for c in HISTORY_COLUMNS if c in pm.cells]
        cells = pm.cells[[load, temp, "phase", "phase_confidence", *cols]].copy()
        moved = pf.cells[[load, temp, "phase", "phase_confidence"]].rename(
            columns={"phase": "phase_fixed", "phase_confidence": "phase_fixed_confidence"})
        cells = cells.merge(moved, on=[load, temp], how="left")
        cells.insert(2, "epoch", e)
        rows.append(cells)
    df = pd.concat(rows, ignore_index=True)
    df.attrs.update(thresholds=own, reference=ref, reference_thresholds=fixed.to_dict(), load=load,
                    temperature=temp)
    return df


def phase_history_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: the cells in each phase under the reference thresholds (``fixed: <label>``)
    and under the epoch's own calibration (``own: <label>``), and how many cells carry another
    label than at the reference epoch, under the reference thresholds (``moved``)."""

    load, temp, ref = history.attrs["load"], history.attrs["temperature"], history.attrs["reference"]
    final = history[history["epoch"] == ref].set_index([load, temp])["phase_fixed"]
    rows = []
    for e, g in history.groupby("epoch"):
        row: dict = {"epoch": int(e)}
        for name, col in (("fixed", "phase_fixed"), ("own", "phase")):
            counts = g[col].value_counts()
            row.update({f"{name}: {p}": int(counts.get(p, 0)) for p in LABELS})
        here = g.set_index([load, temp])["phase_fixed"]
        row["moved"] = int((here.reindex(final.index).astype(object) != final.astype(object)).sum()) \
            if len(final) else None
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.loc[:, (out != 0).any(axis=0) | out.columns.isin(["epoch", "moved"])]
