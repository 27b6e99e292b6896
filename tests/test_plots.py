"""Phase-diagram figures on small synthetic cell tables (no training)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from phasezoo.landscape.phases import phase_grid  # noqa: E402
from phasezoo.analysis.plots import (  # noqa: E402
    BOUNDARY_LABEL,
    PANEL_PREFIX,
    default_metrics,
    metric_grid,
    phase_boundaries,
    phase_plot,
)

LOADS = [4, 16, 8]          # deliberately unsorted: the grids must sort them
TEMPS = [128, 8, 512, 32]


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def synthetic_cells() -> pd.DataFrame:
    """A 3 (width) × 4 (batch_size) cell table: phase I for small width, IV-B for large width
    and small batch, II elsewhere; one missing cka cell."""
    rows = []
    for w in LOADS:
        for b in TEMPS:
            if w == 4:
                phase = "I"
            elif w == 16 and b <= 32:
                phase = "IV-B"
            else:
                phase = "II"
            rows.append({"width": w, "batch_size": b, "train_loss": 1.0 / w + b / 1000,
                         "test_acc": 0.5 + w / 100, "gen_gap": 0.01 * (b / 128 - 1),
                         "hessian_top_eig": float(w * b), "hessian_trace": 10.0 * w * b,
                         "cka": np.nan if (w, b) == (8, 32) else 0.5 + w / 40,
                         "mc_error": -0.01 * w, "ensemble_gain": 0.02, "phase": phase})
    return pd.DataFrame(rows)


def panels(fig: Figure) -> dict[str, object]:
    return {ax.get_label()[len(PANEL_PREFIX):]: ax for ax in fig.axes
            if ax.get_label().startswith(PANEL_PREFIX)}


def boundary_segments(ax) -> list:
    lcs = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_label() == BOUNDARY_LABEL]
    assert len(lcs) == 1
    return [tuple(map(tuple, s)) for s in lcs[0].get_segments()]


# --- phase_boundaries -------------------------------------------------------------------------

def test_uniform_grid_has_no_boundaries():
    labels = pd.DataFrame([["II"] * 4] * 3)
    assert phase_boundaries(labels) == []


def test_single_differing_cell_gives_two_segments():
    # cell (1, 1) (top right, y up) differs from its left and lower neighbours
    labels = pd.DataFrame([["I", "I"], ["I", "III"]])
    segs = phase_boundaries(labels)
    assert sorted(segs) == sorted([
        ((0.5, 0.5), (0.5, 1.5)),    # vertical edge between columns 0 and 1 of row 1
        ((0.5, 0.5), (1.5, 0.5)),    # horizontal edge between rows 0 and 1 of column 1
    ])


def test_missing_labels_are_skipped():
    labels = pd.DataFrame([["I", None], [np.nan, "III"]], dtype=object)
    assert phase_boundaries(labels) == []
    labels = pd.DataFrame([["I", "II", None]], dtype=object)
    assert phase_boundaries(labels) == [((0.5, -0.5), (0.5, 0.5))]


# --- metric_grid ------------------------------------------------------------------------------

def test_metric_grid_orders_axes_and_averages_duplicates():
    cells = synthetic_cells()
    grid = metric_grid(cells, "width", "batch_size", "hessian_trace")
    assert list(grid.index) == [4, 8, 16]
    assert list(grid.columns) == [8, 32, 128, 512]
    assert grid.loc[8, 128] == 10.0 * 8 * 128

    # two seeds' worth of rows per cell average to the cell mean; NaN drops out
    a, b = cells.copy(), cells.copy()
    a["train_loss"], b["train_loss"] = 1.0, 3.0
    b.loc[(b["width"] == 4) & (b["batch_size"] == 8), "train_loss"] = np.nan
    grid = metric_grid(pd.concat([a, b]), "width", "batch_size", "train_loss")
    assert grid.shape == (3, 4)
    assert grid.loc[16, 512] == 2.0
    assert grid.loc[4, 8] == 1.0


def test_metric_grid_missing_cell_is_nan():
    cells = synthetic_cells()
    cells = cells[~((cells["width"] == 16) & (cells["batch_size"] == 512))]
    grid = metric_grid(cells, "width", "batch_size", "cka")
    assert grid.shape == (3, 4)
    assert np.isnan(grid.loc[16, 512]) and np.isnan(grid.loc[8, 32])


# --- phase_plot -------------------------------------------------------------------------------

def test_default_metrics():
    cells = synthetic_cells()
    assert default_metrics(cells) == ["train_loss", "test_acc", "gen_gap", "hessian_top_eig",
                                      "hessian_trace", "cka", "mc_error", "ensemble_gain"]
    cells["test_acc"] = np.nan
    cells["test_error"] = 0.1
    assert "test_error" in default_metrics(cells) and "test_acc" not in default_metrics(cells)


def test_phase_plot_panels_ticks_boundaries_and_png(tmp_path):
    cells = synthetic_cells()
    metrics = ["train_loss", "test_acc", "hessian_trace", "cka"]
    fig = phase_plot(cells, "width", "batch_size", metrics, title="synthetic-zoo")
    assert isinstance(fig, Figure)
    assert fig.get_suptitle() == "synthetic-zoo"
    p = panels(fig)
    assert list(p) == ["phase", *metrics]
    # every metric panel has a colourbar; the phase panel has none
    assert len(fig.axes) == len(p) + len(metrics)

    expected = phase_boundaries(phase_grid(cells, "width", "batch_size"))
    assert len(expected) > 0
    for name, ax in p.items():
        assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "32", "128", "512"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["4", "8", "16"]
        assert ax.get_xlabel() == "batch_size" and ax.get_ylabel() == "width"
        assert sorted(boundary_segments(ax)) == sorted(expected)

    # the phase panel writes the label of every cell; small grids annotate metric values
    assert sorted(t.get_text() for t in p["phase"].texts) == sorted(cells["phase"])
    assert len(p["cka"].texts) == 11            # 12 cells, one missing
    # the missing cka cell is masked (drawn in the colormap's grey 'bad' colour)
    image = p["cka"].images[0]
    assert image.get_array().mask[1, 1]          # width 8 (row 1), batch 32 (column 1)

    out = tmp_path / "phase.png"
    fig.savefig(out, dpi=50)
    assert out.stat().st_size > 0
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 0 and img.shape[1] > 0


def test_phase_plot_default_metrics_and_options():
    cells = synthetic_cells()
    fig = phase_plot(cells, "width", "batch_size", phases=False, ncols=3)
    assert list(panels(fig)) == default_metrics(cells)
    fig = phase_plot(cells, "width", "batch_size", ["cka"], boundaries=False)
    assert not [c for c in panels(fig)["cka"].collections if c.get_label() == BOUNDARY_LABEL]
    # no phase column: no phase panel, no boundaries
    fig = phase_plot(cells.drop(columns="phase"), "width", "batch_size", ["cka"])
    assert list(panels(fig)) == ["cka"]
    assert not panels(fig)["cka"].collections
    with pytest.raises(KeyError):
        phase_plot(cells, "width", "batch_size", ["nope"])


def test_log_colour_scale_for_positive_hessian_trace():
    cells = synthetic_cells()
    fig = phase_plot(cells, "width", "batch_size", ["hessian_trace", "train_loss"], phases=False)
    p = panels(fig)
    assert isinstance(p["hessian_trace"].images[0].norm, LogNorm)
    assert not isinstance(p["train_loss"].images[0].norm, LogNorm)
    cells.loc[0, "hessian_trace"] = -1.0   # a negative trace: linear scale
    fig = phase_plot(cells, "width", "batch_size", ["hessian_trace"], phases=False)
    assert not isinstance(panels(fig)["hessian_trace"].images[0].norm, LogNorm)


def test_large_grid_is_not_annotated():
    rows = [{"width": w, "batch_size": b, "train_loss": float(w + b), "phase": "I" if w < 5 else "II"}
            for w in range(10) for b in range(9)]
    fig = phase_plot(pd.DataFrame(rows), "width", "batch_size", ["train_loss"], phases=False)
    ax = panels(fig)["train_loss"]
    assert not ax.texts
    assert len(boundary_segments(ax)) == 9


def test_learning_curves_one_line_per_cell():
    import pandas as pd

    from phasezoo.analysis.plots import learning_curves

    rows = [{"width": w, "batch_size": b, "seed": s, "epoch": e, "train_loss": 1.0 / (e + 1) + s,
             "test_loss": 2.0 / (e + 1)}
            for w in (4, 8) for b in (32, 128) for s in (0, 1) for e in range(4)]
    fig = learning_curves(pd.DataFrame(rows), "width", "batch_size", ("train_loss", "test_loss", "missing"))
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["train_loss", "test_loss"]
    assert all(len(ax.get_lines()) == 4 for ax in axes)  # 2 widths x 2 batch sizes, seeds averaged
    line = axes[0].get_lines()[0]
    assert list(line.get_ydata()) == [1.5, 1.0, 0.5 + 1 / 3, 0.75]  # mean of seeds 0 and 1
