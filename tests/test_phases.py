"""The phase classifier, its calibration and its confidence, on synthetic cells whose phases are
known by construction."""

import math

import numpy as np
import pandas as pd
import pytest

from phasezoo.landscape.phases import (CKA_STANDARD_ERRORS, FALLBACK_CKA, FALLBACK_MC, UNASSIGNED,
                                       PhaseThresholds, calibrate_thresholds, cell_table, classify_cell, classify_cells, label_confidence,
                                       otsu_threshold, phase_grid, phase_map, threshold_sensitivity)

T = PhaseThresholds(train_loss=0.1, hessian_trace=100.0, mc=0.02, cka=0.9, mc_reference="mean")

# (train_loss, hessian_trace, mc, cka) -> the label of the five sign patterns
KNOWN = [
    ((1.50, 900.0, -0.30, 0.50), "I"),          # high loss, rugged, barrier
    ((1.50, 900.0, 0.25, 0.50), "II"),          # high loss, rugged, under-trained endpoints
    ((0.01, 10.0, -0.30, 0.95), "III"),         # fitted, smooth, barrier
    ((0.01, 10.0, 0.00, 0.60), "IV-A"),         # fitted, smooth, connected, seeds disagree
    ((0.01, 10.0, 0.01, 0.97), "IV-B"),         # fitted, smooth, connected, seeds agree
    ((0.01, 500.0, -0.30, 0.97), "I"),          # low loss but a sharp basin: rugged
    ((0.50, 10.0, 0.00, 0.97), UNASSIGNED),     # rugged (not fitted) and connected: no phase
    ((0.01, 10.0, 0.30, 0.97), UNASSIGNED),     # smooth with mc > +τ: no phase
]


@pytest.mark.parametrize("values,phase", KNOWN)
def test_the_five_sign_patterns_and_the_others(values, phase):
    assert classify_cell(*values, T) == phase


def test_unconverged_curves_leave_a_cell_unassigned_and_missing_metrics_none():
    assert classify_cell(0.01, 10.0, 0.0, 0.95, T, converged=False) == UNASSIGNED
    assert classify_cell(0.01, math.nan, 0.0, 0.9, T) is None
    assert classify_cell(0.01, math.nan, 0.0, 0.9, T, converged=False) is None
    with pytest.raises(ValueError, match="calibrate"):
        classify_cell(0.01, 10.0, 0.0, 0.9, PhaseThresholds())


def test_thresholds_are_inclusive_where_documented():
    assert classify_cell(0.1, 10.0, 0.03, 0.9, T) == "II"        # loss == threshold: not fitted
    assert classify_cell(0.05, 100.0, 0.03, 0.9, T) == "II"      # trace == threshold: rugged
    assert classify_cell(0.05, 10.0, -0.02, 0.9, T) == "IV-B"    # |mc| == threshold: connected
    assert classify_cell(0.05, 10.0, 0.02, 0.9, T) == "IV-B"
    assert classify_cell(0.05, 10.0, -0.0201, 0.9, T) == "III"
    assert classify_cell(0.05, 10.0, 0.0201, 0.9, T) == UNASSIGNED


def _synthetic_cells():
    rows = [{"width": w, "batch_size": b, "train_loss": v[0], "hessian_trace": v[1],
             "mc_error": v[2], "mc_loss": 0.0, "mc_error_chord": -v[2], "cka": v[3]}
            for (w, b), (v, _) in zip([(1, 8), (1, 64), (2, 8), (2, 64), (4, 8), (4, 64), (8, 8), (8, 64)], KNOWN)]
    return pd.DataFrame(rows)


def test_classify_table_and_grid():
    cells = _synthetic_cells()
    cells["phase"] = classify_cells(cells, T)
    assert list(cells["phase"]) == [p for _, p in KNOWN]
    grid = phase_grid(cells, "width", "batch_size")
    assert grid.loc[4, 8] == "IV-B" and grid.loc[1, 8] == "I" and grid.loc[4, 64] == "I"
    cells["curve_converged"] = [True] * 7 + [False]
    assert classify_cells(cells, T).iloc[-1] == UNASSIGNED


def test_mc_metric_and_reference_select_the_column():
    cells = _synthetic_cells()
    on_loss = classify_cells(cells, PhaseThresholds(**{**T.to_dict(), "mc_metric": "mc_loss"}))
    assert on_loss[0] == UNASSIGNED  # mc_loss is 0 everywhere: rugged and connected
    chord = PhaseThresholds(**{**T.to_dict(), "mc_reference": "chord"})
    assert chord.mc_column == "mc_error_chord" and T.mc_column == "mc_error"
    assert classify_cells(cells, chord)[0] == "II"  # the chord column has the opposite sign


def test_sensitivity_reports_exactly_the_cells_that_flip():
    cells = _synthetic_cells()
    cells.loc[3, "cka"] = 0.8  # IV-A cell at 0.8: raising the cka threshold by 25% keeps it IV-A
    cells.loc[4, "cka"] = 1.0  # IV-B with CKA 1.0 stays IV-B under x0.75 (1.125 > 1 under x1.25)
    sens = threshold_sensitivity(cells, T).set_index(["threshold", "factor"])
    assert sens.loc[("cka", 0.75), "cells_changed"] == 1
    assert "2,64: IV-A->IV-B" in sens.loc[("cka", 0.75), "changes"]
    assert sens.loc[("cka", 1.25), "cells_changed"] == 1  # only cell 4 is IV-B now
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
    with pytest.raises(ValueError, match="mc_reference"):
        PhaseThresholds.from_mapping({"mc_reference": "median"})
    assert PhaseThresholds.from_mapping({}).complete is False


# ----------------------------------------------------------------------------- calibration


def test_otsu_splits_two_populations_between_them():
    rng = np.random.default_rng(0)
    low, high = rng.normal(1.0, 0.1, 30), rng.normal(3.0, 0.1, 10)
    cut = otsu_threshold(np.concatenate([low, high]))
    assert low.max() < cut < high.min()
    assert otsu_threshold([0.0, 1.0]) == pytest.approx(0.5)
    assert math.isnan(otsu_threshold([2.0, 2.0, 2.0]))
    assert math.isnan(otsu_threshold([math.nan, 1.0]))


def _grid(seed=0):
    """A synthetic 4 x 4 zoo with 3 seeds a cell: loss and trace fall with width, rugged below
    width 4; mc pairs scatter around a barrier (-0.2) at width 1 and around 0 elsewhere with
    sd 0.01; CKA rises with width. Test columns are random."""
    rng = np.random.default_rng(seed)
    members, pairs = [], []
    for w in (1, 2, 4, 8):
        for b in (8, 32, 128, 512):
            rugged = w < 4
            for s in range(3):
                members.append({"width": w, "batch_size": b, "seed": s, "status": "done",
                                "train_loss": (1.0 if rugged else 0.01) * rng.uniform(0.8, 1.2),
                                "hessian_trace": (1000.0 if rugged else 10.0) * rng.uniform(0.8, 1.2),
                                "hessian_trace_stderr": 1.0, "test_acc": rng.uniform(), "test_loss": rng.uniform()})
            centre = -0.2 if w == 1 else 0.0
            for a, c in ((0, 1), (0, 2), (1, 2)):
                pairs.append({"width": w, "batch_size": b, "seed_a": a, "seed_b": c,
                              "mc_error_chord": centre + rng.normal(0, 0.01), "cka": 0.5 if w < 8 else 0.95,
                              "curve_converged": True})
    members, pairs = pd.DataFrame(members), pd.DataFrame(pairs)
    cellwise = pairs.groupby(["width", "batch_size"])[["mc_error_chord", "cka"]].mean().reset_index()
    members = members.merge(cellwise, on=["width", "batch_size"])
    return members, pairs


def test_calibration_on_a_synthetic_grid_recovers_its_structure():
    members, pairs = _grid()
    cells = cell_table(members, "width", "batch_size")
    t, how = calibrate_thresholds(cells, pairs, init_loss=2.3, cell_keys=("width", "batch_size"))
    assert t.complete and {c["source"] for c in how.values()} == {"calibrated"}
    # loss: geometric midpoint of 2.3 and the best cell (~0.01): between the two populations
    assert t.train_loss == pytest.approx(math.sqrt(2.3 * cells["train_loss"].min()))
    assert cells.loc[cells.width >= 4, "train_loss"].max() < t.train_loss < cells.loc[cells.width < 4, "train_loss"].min()
    # trace: Otsu in log10 between ~10 and ~1000
    assert 12 < t.hessian_trace < 800
    assert 0.5 < t.cka < 0.95
    # mc: 3 x sd / sqrt(3) with sd ~ 0.01
    assert 0.01 < t.mc < 0.025
    pm = phase_map(members, pairs, "width", "batch_size", init_loss=2.3, draws=100)
    got = pm.cells.set_index(["width", "batch_size"])["phase"]
    assert (got.loc[1] == "I").all()            # rugged with a barrier
    assert (got.loc[2] == UNASSIGNED).all()     # rugged and connected: no phase of the five
    assert (got.loc[4] == "IV-A").all() and (got.loc[8] == "IV-B").all()
    conf = pm.cells.set_index(["width", "batch_size"])["phase_confidence"]
    assert (conf.loc[1] == 1.0).all()  # a barrier 20 sd deep survives every resample
    # connected cells: a resample with 2 distinct seeds has one pair, whose mc (sd 0.01) leaves
    # the 0.017 band now and then, so some labels are doubtful; none is below a coin flip's worth
    assert conf.min() > 0.3 and pm.confident() >= 8


def test_calibration_never_reads_a_test_column():
    members, pairs = _grid()
    cells = cell_table(members, "width", "batch_size")
    base = calibrate_thresholds(cells, pairs, 2.3, cell_keys=("width", "batch_size"))
    shuffled = cells.assign(test_acc=-cells["test_acc"] * 1e6, test_loss=np.inf)
    assert calibrate_thresholds(shuffled, pairs, 2.3, cell_keys=("width", "batch_size")) == base
    no_test = cells.drop(columns=["test_acc", "test_loss"])
    assert calibrate_thresholds(no_test, pairs, 2.3, cell_keys=("width", "batch_size")) == base


def test_spec_thresholds_are_kept_and_one_pair_per_cell_falls_back():
    members, pairs = _grid()
    cells = cell_table(members, "width", "batch_size")
    t, how = calibrate_thresholds(cells, pairs, 2.3, PhaseThresholds(train_loss=0.5),
                                  cell_keys=("width", "batch_size"))
    assert t.train_loss == 0.5 and how["train_loss"]["source"] == "spec"
    one = pairs[(pairs.seed_a == 0) & (pairs.seed_b == 1)]
    t, how = calibrate_thresholds(cells, one, 2.3, cell_keys=("width", "batch_size"))
    assert t.mc == FALLBACK_MC and how["mc"]["source"] == "fallback"


def test_confidence_falls_where_seeds_disagree_and_traces_are_uncertain():
    members, pairs = _grid()
    t = PhaseThresholds(train_loss=0.1, hessian_trace=100.0, mc=0.02, cka=0.8)
    # one cell whose pairs straddle the barrier threshold: one pair -0.2, two pairs ~0
    sel = (pairs.width == 4) & (pairs.batch_size == 8)
    pairs.loc[sel, "mc_error_chord"] = [-0.2, 0.0, 0.0]
    # one cell whose trace sits at the threshold with a large standard error
    m = (members.width == 8) & (members.batch_size == 512)
    members.loc[m, "hessian_trace"] = 100.0
    members.loc[m, "hessian_trace_stderr"] = 30.0
    conf = label_confidence(members, pairs, t, "width", "batch_size", draws=300).set_index(["width", "batch_size"])
    assert conf.loc[(4, 8), "phase_confidence"] < 0.8
    assert conf.loc[(8, 512), "phase_confidence"] < 0.8
    assert conf.loc[(8, 8), "phase_confidence"] == 1.0
    # about 1/9 of resamples of 3 seeds hold a single distinct seed and are not counted
    assert 230 < conf.loc[(8, 8), "bootstrap_draws"] < 300
    again = label_confidence(members, pairs, t, "width", "batch_size", draws=300).set_index(["width", "batch_size"])
    pd.testing.assert_frame_equal(conf, again)  # seeded


def _iv_grid(iv_cka, pair_sd, seed=0):
    """The synthetic grid with every smooth cell (width >= 4) given CKA ``iv_cka(width,
    batch_size)`` plus pair noise of sd ``pair_sd``; rugged cells keep CKA 0.5."""
    rng = np.random.default_rng(seed)
    members, pairs = _grid(seed)
    smooth = pairs.width >= 4
    pairs.loc[smooth, "cka"] = [iv_cka(w, b) + rng.normal(0, pair_sd)
                                for w, b in zip(pairs.width[smooth], pairs.batch_size[smooth])]
    cellwise = pairs.groupby(["width", "batch_size"])["cka"].mean().reset_index()
    members = members.drop(columns="cka").merge(cellwise, on=["width", "batch_size"])
    return members, pairs


def test_tau_cka_splits_the_phase_iv_cells_only_when_they_form_two_groups():
    keys = ("width", "batch_size")
    # two IV populations, 0.6 and 0.9, pair noise 0.02: the cut falls between them, not between
    # the rugged cells (0.5) and the rest, where Otsu over all cells would put it
    members, pairs = _iv_grid(lambda w, b: 0.6 if b <= 32 else 0.9, 0.02)
    cells = cell_table(members, *keys)
    t, how = calibrate_thresholds(cells, pairs, 2.3, cell_keys=keys)
    assert how["cka"]["source"] == "calibrated" and how["cka"]["phase_iv_cells"] == 8
    iv = cells[cells.width >= 4]
    assert iv.loc[iv.batch_size <= 32, "cka"].max() < t.cka < iv.loc[iv.batch_size > 32, "cka"].min()
    pm = phase_map(members, pairs, *keys, init_loss=2.3, draws=50)
    got = pm.cells.set_index(["width", "batch_size"])["phase"]
    assert set(got[got.index.get_level_values(1) <= 32].loc[[4, 8]]) == {"IV-A"}
    assert set(got[got.index.get_level_values(1) > 32].loc[[4, 8]]) == {"IV-B"}
    # one IV population (0.85, pair noise 0.05): cell means differ by noise only, so no split is
    # forced; the fallback 0.5 makes them all IV-B, while the all-cell cut is recorded beside it
    members, pairs = _iv_grid(lambda w, b: 0.85, 0.05, seed=1)
    cells = cell_table(members, *keys)
    t, how = calibrate_thresholds(cells, pairs, 2.3, cell_keys=keys)
    assert t.cka == FALLBACK_CKA and how["cka"]["source"] == "fallback"
    assert how["cka"]["gap"] <= CKA_STANDARD_ERRORS * how["cka"]["cell_se"]
    assert 0.5 < how["cka"]["all_cells_otsu"] < 0.85
    pm = phase_map(members, pairs, *keys, init_loss=2.3, draws=50)
    assert set(pm.cells.loc[pm.cells.width >= 4, "phase"]) == {"IV-B"}
    # no phase-IV cell at all (everything rugged): fallback, nothing to split
    members, pairs = _grid()
    cells = cell_table(members, *keys).assign(train_loss=5.0)
    t, how = calibrate_thresholds(cells, pairs, 2.3, cell_keys=keys)
    assert how["cka"]["phase_iv_cells"] == 0 and t.cka == FALLBACK_CKA


def test_coverage_names_the_phases_shown_and_the_evidence_for_the_others():
    members, pairs = _grid()
    pm = phase_map(members, pairs, "width", "batch_size", init_loss=2.3, draws=50)
    cov = pm.coverage().set_index("phase")
    assert list(cov.index) == ["I", "II", "III", "IV-A", "IV-B"]
    assert cov.loc["I", "cells"] == 4 and cov.loc["I", "confident"] == 4
    assert cov.loc["IV-A", "cells"] == 4 and cov.loc["IV-B", "cells"] == 4
    # II: the rugged, converged cells' highest mc is below τ_mc; III: no smooth barrier
    assert cov.loc["II", "cells"] == 0 and "no rugged cell with mc >" in cov.loc["II", "evidence"]
    assert cov.loc["III", "cells"] == 0 and "no barrier among 8 smooth cells" in cov.loc["III", "evidence"]
    # unconverged smooth cells are counted apart, and a grid with none connected says so
    members2, pairs2 = _grid()
    members2["curve_converged"] = members2["width"] != 8
    pm = phase_map(members2, pairs2, "width", "batch_size", init_loss=2.3, draws=20)
    cov = pm.coverage().set_index("phase")
    # width 8 (CKA 0.95) is unassigned; the phase-IV cells left (width 4, CKA 0.5) are one
    # population, so τ_cka falls back to 0.5 and they are IV-B: IV-A is absent, with evidence
    assert cov.loc["IV-B", "cells"] == 4 and cov.loc["IV-A", "cells"] == 0
    assert ("no connected smooth cell with CKA below τ_cka = 0.500: CKA 0.500 to 0.500 on 4 connected cells; "
            "4 smooth cells left unassigned (unconverged curves)") == cov.loc["IV-A", "evidence"]
    assert pm.to_dict()["coverage"][0]["phase"] == "I"
