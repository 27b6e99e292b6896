"""The five-phase taxonomy of Yang et al. (2021), as used in the paper's §2, with explicit thresholds.

Each grid cell (one load × temperature point) is described by its seed-averaged

* final **train loss** (local: is the model fitted?),
* **Hessian trace** of the train loss (local: is the basin rugged or smooth?),
* **mode connectivity** ``mc`` between its seeds (global: a barrier (mc < 0), under-trained
  end points (mc > 0), or connected minima (mc ≈ 0)),
* **CKA** of its seeds' logits (global: do the seeds compute similar functions?).

The decision is local first, then global::

    rugged  = train_loss >= τ_loss  or  hessian_trace >= τ_trace
    rugged:  mc < −τ_mc  -> I   (under-fitted and under-sized: rugged, with a barrier)
             otherwise   -> II  (under-fitted: rugged, no barrier; mc > 0 typically)
    smooth:  mc < −τ_mc  -> III (under-sized: smooth basins separated by a barrier)
             otherwise   -> IV, and CKA splits it:
                 cka >= τ_cka -> IV-B (the seeds agree: the best-generalising phase)
                 cka <  τ_cka -> IV-A

Naming of IV-A and IV-B: the paper's §2 list calls the high-CKA phase IV-A, while its §4.1 (and
Yang et al. 2021, where the taxonomy comes from) call the best-generalising, high-CKA phase
IV-B. We follow Yang et al. and §4.1: **IV-B = high CKA**. The book shows test accuracy per
phase so the choice can be checked against the data.

The thresholds are the zoo spec's ``phases`` section (defaults in :data:`DEFAULT_THRESHOLDS`);
:func:`threshold_sensitivity` reports which cells change phase when each one moves by ±25%.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import pandas as pd

PHASES = ("I", "II", "III", "IV-A", "IV-B")


@dataclass(frozen=True)
class PhaseThresholds:
    """Explicit phase thresholds (see the module docstring for the decision rule).

    ``mc_metric`` names the mode-connectivity column used: ``mc_error`` for classification,
    ``mc_loss`` where the error is not meaningful (language models).
    """

    train_loss: float = 0.1
    hessian_trace: float = 100.0
    mc: float = 0.02
    cka: float = 0.9
    mc_metric: str = "mc_error"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "PhaseThresholds":
        m = dict(m or {})
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown phase threshold {sorted(unknown)[0]!r}; "
                             f"known: {', '.join(cls.__dataclass_fields__)}")
        t = cls(**m)
        for name in ("train_loss", "hessian_trace", "mc", "cka"):
            v = getattr(t, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"phase threshold {name} must be a non-negative number, got {v!r}")
        if t.mc_metric not in ("mc_error", "mc_loss"):
            raise ValueError(f"phase threshold mc_metric must be mc_error or mc_loss, got {t.mc_metric!r}")
        return replace(t, **{k: float(getattr(t, k)) for k in ("train_loss", "hessian_trace", "mc", "cka")})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_THRESHOLDS = PhaseThresholds()


def classify_cell(train_loss: float, hessian_trace: float, mc: float, cka: float,
                  thresholds: PhaseThresholds = DEFAULT_THRESHOLDS) -> str | None:
    """The phase of one cell from its seed-averaged metrics; None when a metric is missing."""
    values = (train_loss, hessian_trace, mc, cka)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    rugged = train_loss >= thresholds.train_loss or hessian_trace >= thresholds.hessian_trace
    barrier = mc < -thresholds.mc
    if rugged:
        return "I" if barrier else "II"
    if barrier:
        return "III"
    return "IV-B" if cka >= thresholds.cka else "IV-A"


CELL_COLUMNS = ("train_loss", "hessian_trace", "cka")


def classify_cells(cells: pd.DataFrame, thresholds: PhaseThresholds = DEFAULT_THRESHOLDS) -> pd.Series:
    """Phase of every row of a cell table with columns ``train_loss``, ``hessian_trace``,
    ``cka`` and ``thresholds.mc_metric``; returns a Series aligned with ``cells``."""
    mc_col = thresholds.mc_metric
    return pd.Series(
        [classify_cell(r["train_loss"], r["hessian_trace"], r[mc_col], r["cka"], thresholds)
         for _, r in cells.iterrows()],
        index=cells.index, name="phase", dtype=object,
    )


def cell_table(members: pd.DataFrame, load: str, temperature: str) -> pd.DataFrame:
    """Seed-average a member table into one row per (load, temperature) cell.

    Member-level columns (train loss, test accuracy, Hessian) are averaged over the members
    that have them (diverged members carry NaN and drop out); cell-level columns (cka, mc_*)
    are the same on each member of a cell and are taken as they are.
    """
    numeric = [c for c in members.columns if c not in (load, temperature)
               and pd.api.types.is_numeric_dtype(members[c]) and c != "seed"]
    grouped = members.groupby([load, temperature], sort=True)
    cells = grouped[numeric].mean()
    cells["seeds"] = grouped.size()
    if "status" in members:
        cells["completed"] = grouped["status"].apply(lambda s: int((s == "done").sum()))
    return cells.reset_index()


def threshold_sensitivity(cells: pd.DataFrame, thresholds: PhaseThresholds = DEFAULT_THRESHOLDS,
                          factors: tuple[float, ...] = (0.75, 1.25)) -> pd.DataFrame:
    """Which cells change phase when each threshold alone is scaled by each factor.

    Returns one row per (threshold, factor): the scaled value, how many cells change phase and
    which (``load,temperature: old->new``). ``cells`` needs the classifier's columns plus the
    first two columns as the cell coordinates.
    """
    base = classify_cells(cells, thresholds)
    key_cols = list(cells.columns[:2])
    rows = []
    for name in ("train_loss", "hessian_trace", "mc", "cka"):
        for f in factors:
            moved = replace(thresholds, **{name: getattr(thresholds, name) * f})
            new = classify_cells(cells, moved)
            changed = [
                f"{cells.loc[i, key_cols[0]]},{cells.loc[i, key_cols[1]]}: {base[i]}->{new[i]}"
                for i in cells.index if base[i] != new[i]
            ]
            rows.append({"threshold": name, "factor": f, "value": getattr(moved, name),
                         "cells_changed": len(changed), "changes": "; ".join(changed)})
    return pd.DataFrame(rows)


def phase_grid(cells: pd.DataFrame, load: str, temperature: str, column: str = "phase") -> pd.DataFrame:
    """A load × temperature grid of one cell column (rows: load, columns: temperature)."""
    return cells.pivot(index=load, columns=temperature, values=column)
