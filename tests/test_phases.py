"""The phase classifier on synthetic cells whose phases are known by construction."""

import math

import pandas as pd
import pytest

from phasezoo.landscape.phases import (PhaseThresholds, cell_table, classify_cell, classify_cells,
                                       phase_grid, threshold_sensitivity)

T = PhaseThresholds(train_loss=0.1, hessian_trace=100.0, mc=0.02, cka=0.9)

# (train_loss, hessian_trace, mc_error, cka) -> the phase the taxonomy assigns
KNOWN = [
    ((1.50, 900.0, -0.30, 0.50), "I"),     # high loss, rugged, barrier
    ((1.50, 900.0, 0.25, 0.50), "II"),     # high loss, rugged, under-trained endpoints
    ((0.01, 10.0, -0.30, 0.95), "III"),    # fitted, smooth, barrier
    ((0.01, 10.0, 0.00, 0.60), "IV-A"),    # fitted, smooth, connected, seeds disagree
    ((0.01, 10.0, 0.01, 0.97), "IV-B"),    # fitted, smooth, connected, seeds agree
    ((0.01, 500.0, -0.30, 0.97), "I"),     # low loss but a sharp basin: rugged
    ((0.50, 10.0, 0.00, 0.97), "II"),      # flat but not fitted: rugged side
    ((0.01, 10.0, 0.30, 0.97), "IV-B"),    # smooth with mc > 0: local metrics decide IV
]


@pytest.mark.parametrize("values,phase", KNOWN)
def test_known_cells(values, phase):
    assert classify_cell(*values, T) == phase


def test_thresholds_are_inclusive_where_documented():
    assert classify_cell(0.1, 10.0, 0.0, 0.9, T) == "II"       # loss == threshold: not fitted
    assert classify_cell(0.05, 100.0, 0.0, 0.9, T) == "II"     # trace == threshold: rugged
    assert classify_cell(0.05, 10.0, -0.02, 0.9, T) == "IV-B"  # |mc| == threshold: connected
    assert classify_cell(0.05, 10.0, -0.0201, 0.9, T) == "III"


def test_missing_metric_gives_no_phase():
    assert classify_cell(0.01, math.nan, 0.0, 0.9, T) is None


def _synthetic_cells():
    rows = [{"width": w, "batch_size": b, "train_loss": v[0], "hessian_trace": v[1],
             "mc_error": v[2], "mc_loss": 0.0, "cka": v[3]}
            for (w, b), (v, _) in zip([(1, 8), (1, 64), (2, 8), (2, 64), (4, 8), (4, 64), (8, 8), (8, 64)], KNOWN)]
    return pd.DataFrame(rows)


def test_classify_table_and_grid():
    cells = _synthetic_cells()
    cells["phase"] = classify_cells(cells, T)
    assert list(cells["phase"]) == [p for _, p in KNOWN]
    grid = phase_grid(cells, "width", "batch_size")
    assert grid.loc[4, 8] == "IV-B" and grid.loc[1, 8] == "I" and grid.loc[4, 64] == "I"


def test_mc_metric_selects_the_column():
    cells = _synthetic_cells()
    on_loss = classify_cells(cells, PhaseThresholds(**{**T.to_dict(), "mc_metric": "mc_loss"}))
    assert "I" not in set(on_loss[:1]) and on_loss[0] == "II"  # mc_loss is 0 everywhere


def test_sensitivity_reports_exactly_the_cells_that_flip():
    cells = _synthetic_cells()
    cells.loc[3, "cka"] = 0.8  # IV-A cell at 0.8: raising the cka threshold by 25% keeps it IV-A
    cells.loc[4, "cka"] = 1.0  # IV-B with CKA 1.0 stays IV-B under x0.75 and x1.25 (1.125 > 1!)
    sens = threshold_sensitivity(cells, T).set_index(["threshold", "factor"])
    # cka x0.75 = 0.675: the IV-A cell at 0.8 becomes IV-B
    assert sens.loc[("cka", 0.75), "cells_changed"] == 1
    assert "2,64: IV-A->IV-B" in sens.loc[("cka", 0.75), "changes"]
    # cka x1.25 = 1.125: every IV-B cell becomes IV-A (cells 4 and 7; cell 4 has cka 1.0 < 1.125)
    assert sens.loc[("cka", 1.25), "cells_changed"] == 2
    # train_loss x1.25 = 0.125 and x0.75 = 0.075: no cell has a loss in between
    assert sens.loc[("train_loss", 1.25), "cells_changed"] == 0
    assert sens.loc[("train_loss", 0.75), "cells_changed"] == 0


def test_cell_table_averages_done_members():
    members = pd.DataFrame({
        "width": [1, 1, 1, 2, 2, 2], "batch_size": [8] * 6, "seed": [0, 1, 2] * 2,
        "train_loss": [1.0, 2.0, math.nan, 0.1, 0.2, 0.3],
        "status": ["done", "done", "diverged", "done", "done", "done"],
    })
    cells = cell_table(members, "width", "batch_size")
    assert list(cells["train_loss"]) == pytest.approx([1.5, 0.2])
    assert list(cells["completed"]) == [2, 3]


def test_bad_thresholds():
    with pytest.raises(ValueError, match="unknown phase threshold"):
        PhaseThresholds.from_mapping({"loss": 1})
    with pytest.raises(ValueError, match="non-negative"):
        PhaseThresholds.from_mapping({"cka": -1})
