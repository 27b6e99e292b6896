"""Phase-diagram figures of a zoo, in the style of the paper's Figure 3 and Figures 6-17.

Each figure is a grid of heatmap panels over the zoo's load × temperature plane, one panel per
metric (train loss, test accuracy or error, generalisation gap, Hessian top eigenvalue and
trace, CKA, mode connectivity, downstream gains). **Temperature runs along the x axis and load
up the y axis**, smallest value at the bottom-left, as in the paper: both axes are categorical
(one evenly sized cell per grid value, tick labels show the values themselves, e.g. batch sizes
8, 32, 128), so a geometric grid is not squashed into one corner.

On top of every panel the **phase boundaries** are drawn: a black segment along each cell edge
where the phase labels (:mod:`phasezoo.landscape.phases`) of the two neighbouring cells
differ. This lets each metric be read against the phase map, which is how the paper argues
that e.g. the Hessian trace or ensembling gain changes character across phases. An optional
first panel shows the phase labels themselves as a categorical map with the label in each cell.

matplotlib is imported lazily inside the functions, so importing :mod:`phasezoo` does not
need it; nothing here calls ``plt.show`` (safe with the Agg backend).

Coordinates: cell ``(i, j)`` is row ``i`` (the ``i``-th smallest load) and column ``j`` (the
``j``-th smallest temperature) and covers ``[j-0.5, j+0.5] × [i-0.5, i+0.5]`` in data
coordinates, matching ``imshow(..., origin="lower")``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from phasezoo.analysis.report import zoo_cells
from phasezoo.landscape.phases import CONFIDENT, LABELS, UNASSIGNED, is_missing, phase_grid
from phasezoo.zoo import Zoo

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from phasezoo.spec import ZooSpec

Segment = tuple[tuple[float, float], tuple[float, float]]

#: the downstream columns (phasezoo.downstream.runner.DOWNSTREAM_COLUMNS) drawn by default, where computed
DEFAULT_DOWNSTREAM_PANELS = ("ensemble_gain", "rebasin_gain", "prune_acc_0.9", "wise_ft_gain")
#: columns drawn with a logarithmic colour scale when all their values are positive
LOG_COLUMNS = ("hessian_top_eig", "hessian_trace")
#: columns whose sign matters (barrier vs no barrier, gain vs loss): diverging map centred at 0
SIGNED_COLUMNS = ("gen_gap", "mc_error", "mc_loss", "mc_error_chord", "mc_loss_chord", "wise_ft_gain", "ensemble_gain",
                  "rebasin_gain", "naive_avg_gain")
#: one colour per label, in the order of :data:`LABELS` (the five phases, then "unassigned": white)
PHASE_COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8fd18f", "#2ca02c", "#ffffff")
#: grids up to this many rows and columns get their cell values written in the cells
ANNOTATE_MAX = 8
BOUNDARY_LABEL = "phase_boundaries"
PANEL_PREFIX = "panel:"


def _axis_values(cells: pd.DataFrame, column: str) -> list[Any]:
    return sorted(pd.unique(cells[column].dropna()))


def metric_grid(cells: pd.DataFrame, load: str, temp: str, column: str) -> pd.DataFrame:
    """The mean of ``column`` per (load, temperature) cell as a grid (labels:
    :func:`phasezoo.landscape.phases.phase_grid`).

    Rows are the load values ascending (row 0 = smallest load, drawn at the bottom of a panel),
    columns the temperature values ascending. Rows of ``cells`` that share a cell (e.g. one
    row per seed) are averaged, NaN values dropping out; a cell with no value is NaN. Every
    load and temperature value present in ``cells`` gets a row/column, so grids of different
    columns of the same table align.
    """
    values = pd.to_numeric(cells[column], errors="coerce")
    df = pd.DataFrame({load: cells[load], temp: cells[temp], column: values})
    grid = df.groupby([load, temp])[column].mean().unstack(temp)
    return grid.reindex(index=_axis_values(cells, load), columns=_axis_values(cells, temp))


def phase_boundaries(labels: pd.DataFrame) -> list[Segment]:
    """The cell edges between horizontally or vertically adjacent cells of different label.

    ``labels`` is a grid (:func:`phasezoo.landscape.phases.phase_grid`); cell ``(i, j)`` spans
    ``[j-0.5, j+0.5] × [i-0.5, i+0.5]`` as ``(x, y)``. A pair where either label is missing
    gives no segment. Returns ``((x0, y0), (x1, y1))`` segments: first the vertical edges
    between columns ``j`` and ``j+1``, then the horizontal edges between rows ``i`` and ``i+1``.
    """
    a = labels.to_numpy(dtype=object)
    n, m = a.shape
    segs: list[Segment] = []
    for i in range(n):
        for j in range(m - 1):
            p, q = a[i, j], a[i, j + 1]
            if not (is_missing(p) or is_missing(q)) and p != q:
                segs.append(((j + 0.5, i - 0.5), (j + 0.5, i + 0.5)))
    for i in range(n - 1):
        for j in range(m):
            p, q = a[i, j], a[i + 1, j]
            if not (is_missing(p) or is_missing(q)) and p != q:
                segs.append(((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))
    return segs


def _labels_and_boundaries(cells: pd.DataFrame, load: str, temp: str) -> tuple[pd.DataFrame | None, list[Segment]]:
    """The phase-label grid of ``cells`` and its boundaries; ``(None, [])`` without phases."""
    if not ("phase" in cells and cells["phase"].notna().any()):
        return None, []
    labels = phase_grid(cells, load, temp)
    return labels, phase_boundaries(labels)


def _present(cells: pd.DataFrame, col: str) -> bool:
    return col in cells and pd.to_numeric(cells[col], errors="coerce").notna().any()


def default_metrics(cells: pd.DataFrame, mc_metric: str | None = None) -> list[str]:
    """The metric panels shown by default, those present (not all missing) in ``cells``:
    train loss, test accuracy (else test error), generalisation gap, Hessian top eigenvalue and
    trace, CKA, mode connectivity (``mc_metric``, e.g. the phases' ``mc_error_chord``, else
    ``mc_error``, else ``mc_loss``), then the
    downstream columns of :data:`DEFAULT_DOWNSTREAM_PANELS`."""
    out = ["train_loss", "test_acc" if _present(cells, "test_acc") else "test_error", "gen_gap",
           "hessian_top_eig", "hessian_trace", "cka"]
    mcs = [mc_metric] if mc_metric else []
    mc = next((c for c in [*mcs, "mc_error", "mc_loss"] if _present(cells, c)), None)
    if mc:
        out.append(mc)
    out += DEFAULT_DOWNSTREAM_PANELS
    return [c for c in out if _present(cells, c)]


def _fmt_tick(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def _set_ticks(ax: "Axes", grid: pd.DataFrame, load: str, temp: str) -> None:
    ax.set_xticks(range(grid.shape[1]), [_fmt_tick(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [_fmt_tick(v) for v in grid.index])
    ax.set_xlabel(temp)
    ax.set_ylabel(load)
    ax.tick_params(axis="x", labelrotation=45 if grid.shape[1] > 6 else 0)


def _norm_and_cmap(column: str, values: np.ndarray) -> tuple[Any, Any]:
    import matplotlib as mpl  # lazy: optional extra "book"
    from matplotlib import colors  # lazy: optional extra "book"

    finite = values[np.isfinite(values)]
    if column in LOG_COLUMNS and finite.size and (finite > 0).all():
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi:
            lo, hi = lo / 2, hi * 2
        return colors.LogNorm(vmin=lo, vmax=hi), mpl.colormaps["viridis"]
    if column in SIGNED_COLUMNS and finite.size and finite.min() < 0 < finite.max():
        return colors.CenteredNorm(vcenter=0.0), mpl.colormaps["RdBu_r"]
    return None, mpl.colormaps["viridis"]


def _draw_boundaries(ax: "Axes", segments: list[Segment]) -> None:
    from matplotlib.collections import LineCollection  # lazy: optional extra "book"

    lc = LineCollection(segments, colors="black", linewidths=2.0, label=BOUNDARY_LABEL,
                        capstyle="projecting", zorder=3)
    ax.add_collection(lc, autolim=False)


def _text_color(rgba: Sequence[float]) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _annotate(ax: "Axes", image: Any, grid: pd.DataFrame, fontsize: float) -> None:
    a = grid.to_numpy(dtype=float)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[i, j]
            if np.isfinite(v):
                color = _text_color(image.cmap(image.norm(v)))
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=fontsize, color=color)


def _metric_panel(ax: "Axes", fig: "Figure", grid: pd.DataFrame, column: str, load: str, temp: str,
                  annotate: bool, fontsize: float) -> None:
    values = grid.to_numpy(dtype=float)
    norm, cmap = _norm_and_cmap(column, values)
    cmap = cmap.with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=cmap,
                      norm=norm, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03)
    if annotate:
        _annotate(ax, image, grid, fontsize)
    ax.set_title(column)


def _phase_panel(ax: "Axes", labels: pd.DataFrame, fontsize: float,
                 confidence: pd.DataFrame | None = None) -> None:
    """The labels as a categorical map: one colour per phase, unassigned cells white and
    hatched with their label "?", missing ones grey "–"; a cell whose label has confidence
    below :data:`CONFIDENT` gets its confidence under the label, in italics."""
    from matplotlib.colors import ListedColormap  # lazy: optional extra "book"
    from matplotlib.patches import Rectangle  # lazy: optional extra "book"

    index = {p: k for k, p in enumerate(LABELS)}
    a = labels.to_numpy(dtype=object)
    codes = np.array([[index.get(v, np.nan) if not is_missing(v) else np.nan for v in row] for row in a],
                     dtype=float).reshape(a.shape)
    cmap = ListedColormap(PHASE_COLORS).with_extremes(bad="lightgrey")
    ax.imshow(np.ma.masked_invalid(codes), origin="lower", aspect="auto", cmap=cmap, vmin=-0.5,
              vmax=len(LABELS) - 0.5, interpolation="nearest")
    conf = None if confidence is None else confidence.reindex(index=labels.index, columns=labels.columns)
    doubtful = 0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            v = a[i, j]
            if is_missing(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=fontsize, fontweight="bold")
                continue
            if v == UNASSIGNED:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.6",
                                       linewidth=0))
            c = np.nan if conf is None else conf.iat[i, j]
            text = "?" if v == UNASSIGNED else str(v)
            if np.isfinite(c) and c < CONFIDENT:
                doubtful += 1
                ax.text(j, i + 0.12, text, ha="center", va="center", fontsize=fontsize, fontweight="bold")
                ax.text(j, i - 0.22, f"{c:.2f}", ha="center", va="center", fontsize=fontsize * 0.7,
                        style="italic")
            else:
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, fontweight="bold")
    ax.set_title("phase" + (f" (number: confidence < {CONFIDENT})" if doubtful else "")
                 + ("; ? unassigned" if (a == UNASSIGNED).any() else ""))


def _draw_panels(fig: "Figure", axes: Sequence["Axes"], cells: pd.DataFrame, load: str, temp: str,
                 panels: Sequence[str], labels: pd.DataFrame | None, segments: list[Segment]) -> None:
    """Draw one zoo's ``panels`` (``"phase"`` or a metric column) into ``axes``, with ``segments``
    (the phase boundaries) on every panel."""
    n_rows_grid = len(_axis_values(cells, load))
    n_cols_grid = len(_axis_values(cells, temp))
    annotate = n_rows_grid <= ANNOTATE_MAX and n_cols_grid <= ANNOTATE_MAX
    fontsize = 9.0 if max(n_rows_grid, n_cols_grid) <= 5 else 7.0
    for ax, name in zip(axes, panels):
        ax.set_label(PANEL_PREFIX + name)
        if name == "phase":
            conf = metric_grid(cells, load, temp, "phase_confidence") if "phase_confidence" in cells else None
            _phase_panel(ax, labels, 11.0 if annotate else 7.0, conf)
            grid = labels
        else:
            grid = metric_grid(cells, load, temp, name)
            _metric_panel(ax, fig, grid, name, load, temp, annotate, fontsize)
        _set_ticks(ax, grid, load, temp)
        if segments:
            _draw_boundaries(ax, segments)
        ax.set_xlim(-0.5, grid.shape[1] - 0.5)
        ax.set_ylim(-0.5, grid.shape[0] - 0.5)


def phase_plot(cells: pd.DataFrame, load: str, temp: str, metrics: Sequence[str] | None = None, *,
               title: str | None = None, phases: bool = True, boundaries: bool = True,
               ncols: int = 2, mc_metric: str | None = None) -> "Figure":
    """A figure of heatmap panels over the load × temperature grid, one per metric.

    ``cells`` has one row per grid cell (:func:`phasezoo.analysis.report.zoo_cells`; several rows per
    cell are averaged). ``metrics`` defaults to :func:`default_metrics`. Each panel is an
    ``imshow`` of :func:`metric_grid` (temperature across, load upward, categorical ticks
    labelled with the grid values) with its colourbar; Hessian columns use a log colour scale
    when all positive, signed columns (gaps, mode connectivity, gains) a diverging scale
    centred at 0; missing cells are grey; cell values are written in when the grid is at most
    8×8. Where ``cells`` has a ``phase`` column, the phase boundaries
    (:func:`phase_boundaries`) are drawn on every panel as one black ``LineCollection``
    labelled ``"phase_boundaries"`` (``boundaries=False`` leaves them out), and ``phases=True``
    adds a first panel with the phase labels as a categorical map. Panel axes carry the label
    ``"panel:<metric>"`` (``"panel:phase"``) to tell them from colourbars. ``title`` (the zoo
    name) becomes the figure title. Each panel is :data:`PANEL_SIZE` inches, ``ncols`` (default 2)
    to a row: at the default the figure is 8.6 inches wide, which a book page shows unscaled, so
    the values written in the cells stay legible (:func:`zoo_phase_figures` splits a zoo's panels
    into such figures).
    """
    import matplotlib.pyplot as plt  # lazy: optional extra "book"

    metrics = list(default_metrics(cells, mc_metric) if metrics is None else metrics)
    missing = [m for m in metrics if m not in cells]
    if missing:
        raise KeyError(f"no column {missing[0]!r} in the cell table")
    labels, segments = _labels_and_boundaries(cells, load, temp)
    panels: list[str] = (["phase"] if phases and labels is not None else []) + metrics
    if not panels:
        raise ValueError("nothing to plot: no metric columns and no phase labels")

    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[len(panels):]:
        fig.delaxes(ax)
    _draw_panels(fig, flat[:len(panels)], cells, load, temp, panels, labels,
                 segments if boundaries else [])
    if title:
        fig.suptitle(title)
    return fig


def zoo_phase_plot(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
                   root: str | Path = "data/zoos", *, epoch: int | str = "last",
                   metrics: Sequence[str] | None = None) -> "Figure":
    """:func:`phase_plot` of a stored zoo's cells (:func:`phasezoo.analysis.report.zoo_cells`), titled
    ``"<zoo>/<profile>"``; the mode-connectivity panel uses the profile's phase ``mc_metric``."""

    z = Zoo.of(zoo, profile, root)
    cells = zoo_cells(z, epoch=epoch)
    return phase_plot(cells, z.load_axis, z.temperature_axis, metrics,
                      title=f"{z.name}/{z.profile}", mc_metric=z.settings.phases.mc_column)


#: the figures of a zoo's phase page, as the paper's Figure 3 groups them: (a) test accuracy (or
#: error) with the phases and (b) the train loss, then (c-g) the loss-landscape metrics, then the
#: downstream results; "mc" is the profile's phase mc metric. Panels a zoo lacks are left out.
PANEL_GROUPS = {
    "Phases and performance": ("phase", "test_acc", "test_error", "train_loss", "gen_gap"),
    "Loss landscape": ("hessian_top_eig", "hessian_trace", "cka", "mc"),
    "Downstream": DEFAULT_DOWNSTREAM_PANELS,
}


def zoo_phase_figures(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None,
                      root: str | Path = "data/zoos", *, epoch: int | str = "last",
                      groups: dict[str, Sequence[str]] | None = None) -> list[tuple[str, "Figure"]]:
    """A zoo's phase plot split into figures of at most four panels (two by two, 8.6 inches
    wide): one ``(title, figure)`` per group of :data:`PANEL_GROUPS` (or ``groups``) with a
    panel present. The phase map is the first panel of the first figure; every panel of every
    figure carries the phase boundaries. Test accuracy is drawn where the task has one, else
    test error. A group with more than four panels present is split into figures of four."""
    z = Zoo.of(zoo, profile, root)
    cells = zoo_cells(z, epoch=epoch)
    mc = z.settings.phases.mc_column
    labels, _ = _labels_and_boundaries(cells, z.load_axis, z.temperature_axis)
    out, phase_shown = [], False
    for title, wanted in (PANEL_GROUPS if groups is None else groups).items():
        panels = []
        for name in wanted:
            column = mc if name == "mc" else name
            if column == "test_error" and _present(cells, "test_acc"):
                continue
            if (column == "phase" and labels is not None and not phase_shown) or \
                    (column != "phase" and _present(cells, column)):
                panels.append(column)
        for k in range(0, len(panels), 4):
            chunk = panels[k:k + 4]
            with_phase = "phase" in chunk
            metrics = [c for c in chunk if c != "phase"]
            if not metrics and not with_phase:
                continue
            fig = phase_plot(cells, z.load_axis, z.temperature_axis, metrics, phases=with_phase,
                             title=f"{z.name}/{z.profile}: {title.lower()}", mc_metric=mc)
            phase_shown |= with_phase
            out.append((title if k == 0 else f"{title} (continued)", fig))
    return out


#: the panels of the cross-zoo comparison (the paper's Figure 4); "mc" is each zoo's phase mc metric
COMPARISON_PANELS = ("phase", "train_loss", "test_error", "hessian_trace", "cka", "mc")
#: panel width and height in inches (two to a row: 8.6 inches, shown unscaled on a book page)
PANEL_SIZE = (4.3, 3.5)


def comparison_plot(zoos: Sequence[tuple[str, pd.DataFrame, str, str, str]],
                    panels: Sequence[str] = COMPARISON_PANELS) -> "Figure":
    """The paper's Figure 4: one row per zoo, one column per panel, every zoo on its own load ×
    temperature grid with its phase boundaries on every panel.

    ``zoos`` holds ``(title, cells, load, temperature, mc_metric)`` per zoo (see
    :func:`zoo_comparison_plot`). ``"mc"`` stands for each zoo's ``mc_metric``, so GPT rows show
    mc on the loss and the others mc on the error. Test *error* is shown for every domain (1 −
    accuracy, 1 − next-token accuracy, the PINN's relative L2 error) so that dark means good in
    the same column. A panel whose column a zoo lacks is left empty and says so.
    """
    import matplotlib.pyplot as plt  # lazy: optional extra "book"

    if not zoos:
        raise ValueError("no zoos to compare")
    ncols = len(panels)
    fig, axes = plt.subplots(len(zoos), ncols, figsize=(3.1 * ncols, 2.7 * len(zoos)), squeeze=False,
                             layout="constrained")
    for row, (title, cells, load, temp, mc_metric) in zip(axes, zoos):
        labels, segments = _labels_and_boundaries(cells, load, temp)
        for ax, name in zip(row, panels):
            column = mc_metric if name == "mc" else name
            if (column == "phase" and labels is None) or (column != "phase" and not _present(cells, column)):
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"no {column}", ha="center", va="center", transform=ax.transAxes)
                continue
            _draw_panels(fig, [ax], cells, load, temp, [column], labels, segments)
        first = row[0].get_title()  # the first panel's own title (empty for a "no <column>" panel)
        row[0].set_title(f"{title}\n{first}" if first else title)
    return fig


def zoo_comparison_plot(specs: Sequence["ZooSpec"], profile: str, root: str | Path,
                        panels: Sequence[str] = COMPARISON_PANELS) -> "Figure":
    """:func:`comparison_plot` of stored zoos (their last-epoch cells)."""
    return comparison_plot(_comparison_rows(specs, profile, root), panels)


def _comparison_rows(specs: Sequence["ZooSpec"], profile: str, root: str | Path) -> list:
    return [(spec.name, zoo_cells(spec, profile, root), spec.load_axis, spec.temperature_axis,
             spec.profile(profile).phases.mc_column) for spec in specs]


def zoo_comparison_figures(specs: Sequence["ZooSpec"], profile: str, root: str | Path,
                           panels: Sequence[str] = COMPARISON_PANELS, per_figure: int = 3) -> list["Figure"]:
    """The paper's Figure 4 in figures a page shows unscaled: the same rows (one per zoo) with
    ``per_figure`` of the ``panels`` columns each (default: phase, train loss, test error; then
    Hessian trace, CKA, mc)."""
    rows = _comparison_rows(specs, profile, root)
    return [comparison_plot(rows, panels[k:k + per_figure]) for k in range(0, len(panels), per_figure)]


def learning_curves(history: pd.DataFrame, load: str, temp: str,
                    columns: Sequence[str] = ("train_loss", "test_loss"), *, title: str | None = None):
    """Per-epoch curves of a zoo (:func:`phasezoo.zoo.zoo_history`): one panel per column, one
    line per grid cell (seed mean), coloured by the load value (darker = larger load value) and
    styled by temperature (solid = lowest). Losses are drawn on a log scale when positive."""
    import matplotlib.pyplot as plt  # lazy: optional extra "book"

    cols = [c for c in columns if c in history and history[c].notna().any()]
    if not cols:
        raise KeyError(f"none of {list(columns)} in the history")
    means = history.groupby([load, temp, "epoch"], as_index=False)[cols].mean()
    loads, temps = sorted(means[load].unique()), sorted(means[temp].unique())
    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.6), squeeze=False, layout="constrained")
    for ax, col in zip(axes[0], cols):
        for (lv, tv), g in means.groupby([load, temp]):
            colour = cmap(loads.index(lv) / max(1, len(loads) - 1))
            ax.plot(g["epoch"], g[col], color=colour, linestyle=styles[temps.index(tv) % len(styles)],
                    label=f"{load}={_fmt_tick(lv)}, {temp}={_fmt_tick(tv)}")
        if "loss" in col and (means[col] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(col)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="x-small")
    if title:
        fig.suptitle(title)
    return fig


def wise_ft_plot(curves: pd.DataFrame, table: pd.DataFrame, *, title: str | None = None):
    """Wise-FT curves by phase: the test score of ``θ(α) = (1 − α) θ_early + α θ_final`` minus
    the final model's, against α, averaged over the members of each phase (``curves`` from
    :func:`phasezoo.downstream.runner.wise_ft_curves`, phases from a ``zoo_table``), with the
    members' mean chosen α (picked on the train loss) marked on each line. Members of no phase
    are drawn as "unassigned"."""
    import matplotlib.pyplot as plt  # lazy: optional extra "book"

    if curves.empty:
        raise KeyError("no Wise-FT curves stored")
    phase = table.set_index("member")["phase"].where(lambda p: p.notna(), UNASSIGNED)
    df = curves.assign(phase=curves["member"].map(phase).fillna(UNASSIGNED))
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    for label, colour in zip(LABELS, PHASE_COLORS[:-1] + ("#7f7f7f",)):
        g = df[df["phase"] == label]
        if g.empty:
            continue
        mean = g.groupby("alpha")["gain_vs_final"].mean()
        n = g["member"].nunique()
        ax.plot(mean.index, mean.values, color=colour, marker=".", label=f"{label} ({n} models)")
        chosen = g.loc[g["chosen"], "alpha"].mean()
        ax.axvline(chosen, color=colour, linestyle=":", linewidth=1)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("α  (0: early checkpoint, 1: final model)")
    ax.set_ylabel("test score − final model's")
    ax.legend(fontsize="x-small")
    ax.set_title(title or "Wise-FT along α (dotted: mean α chosen on train)")
    return fig


#: the rows of :func:`phase_history_plot`: history column -> row title
HISTORY_ROWS = {"phase_fixed": "thresholds of epoch {ref}", "phase": "own calibration"}


def phase_history_plot(history: pd.DataFrame, rows: Sequence[str] = tuple(HISTORY_ROWS), *,
                       title: str | None = None) -> "Figure":
    """The phase map at each measured epoch (:func:`phasezoo.analysis.history.phase_history`):
    one column per epoch, one row per labelling in ``rows`` (default: the reference epoch's
    thresholds held fixed, then each epoch's own calibration), each panel a categorical phase
    map as in :func:`phase_plot` with its boundaries. Panel axes are labelled
    ``"panel:<row>@<epoch>"``."""
    import matplotlib.pyplot as plt  # lazy: optional extra "book"

    load, temp, ref = history.attrs["load"], history.attrs["temperature"], history.attrs["reference"]
    epochs = sorted(history["epoch"].unique())
    n_grid = max(len(_axis_values(history, load)), len(_axis_values(history, temp)))
    fontsize = 11.0 if n_grid <= ANNOTATE_MAX else 7.0
    fig, axes = plt.subplots(len(rows), len(epochs), figsize=(3.6 * len(epochs), 3.3 * len(rows)),
                             squeeze=False, layout="constrained")
    for r, column in enumerate(rows):
        conf_col = f"{column}_confidence"
        for c, epoch in enumerate(epochs):
            ax = axes[r, c]
            cells = history[history["epoch"] == epoch]
            labels = phase_grid(cells, load, temp, column)
            conf = metric_grid(cells, load, temp, conf_col) if conf_col in cells else None
            _phase_panel(ax, labels, fontsize, conf)
            _set_ticks(ax, labels, load, temp)
            _draw_boundaries(ax, phase_boundaries(labels))
            ax.set_xlim(-0.5, labels.shape[1] - 0.5)
            ax.set_ylim(-0.5, labels.shape[0] - 0.5)
            ax.set_label(f"{PANEL_PREFIX}{column}@{epoch}")
            ax.set_title(f"epoch {epoch}: " + HISTORY_ROWS.get(column, column).format(ref=ref), fontsize=10)
    if title:
        fig.suptitle(title)
    return fig
