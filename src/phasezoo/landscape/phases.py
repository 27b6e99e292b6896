"""The five-phase taxonomy of Yang et al. (2021), as used in the paper's §2: the decision rule,
thresholds calibrated from training-side quantities, and each label's confidence.

Each grid cell (one load × temperature point) is described by its seed-averaged

* final **train loss** (local: is the model fitted?),
* **Hessian trace** of the train loss (local: is the basin rugged or smooth?),
* **mode connectivity** ``mc`` between its seeds (global: a barrier (mc < 0), under-trained
  end points (mc > 0), or connected minima (mc ≈ 0)),
* **CKA** of its seeds' outputs (global: do the seeds compute similar functions?).

The decision rule: exactly the taxonomy's five sign patterns
    ::

        rugged  = train_loss >= τ_loss  or  hessian_trace >= τ_trace      (else: smooth)
        rugged,  mc < −τ_mc   -> I    (under-fitted and under-sized: rugged, with a barrier)
        rugged,  mc > +τ_mc   -> II   (under-fitted: rugged, the curve's middle beats its ends)
        smooth,  mc < −τ_mc   -> III  (under-sized: smooth basins separated by a barrier)
        smooth, |mc| <= τ_mc  -> IV, split by CKA:  cka >= τ_cka -> IV-B,  else IV-A

    Every other pattern (rugged with |mc| ≤ τ_mc, smooth with mc > +τ_mc) is ``"unassigned"``,
    and so is a cell whose Bézier curves did not converge (its mc is not a measurement of the
    landscape but of the curve optimiser). ``None`` means a metric is missing.

Naming of IV-A and IV-B: the paper's §2 list calls the high-CKA phase IV-A, while its §4.1 (and
Yang et al. 2021, where the taxonomy comes from) call the best-generalising, high-CKA phase
IV-B. We follow Yang et al. and §4.1: **IV-B = high CKA**. The book shows test accuracy per
phase so the choice can be checked against the data.

The mc used is the spec's ``mc_metric`` (``mc_error``; ``mc_loss`` for language models)
referenced to the chord between the endpoints (``mc_reference: chord``, the default; see
:func:`phasezoo.landscape.curves.mode_connectivity_value`); ``mc_reference: mean`` gives the
paper's endpoint-mean definition. The CKA is the unbiased estimator (its chance level is 0);
the paper's biased per-batch value is stored beside it as ``cka_paper``.

Calibration (:func:`calibrate_thresholds`): one rule for every zoo, from training-side
quantities only (never a test column):

* ``τ_loss = √(L_init · L_best)``: the geometric midpoint between the train loss at
  initialisation (median over members of the epoch-0 evaluation) and the lowest cell train loss
  of the grid. A cell is *fitted* when it has come more than half-way, on a log scale, from
  where every model starts to the best fit any cell reached.
* ``τ_trace``: Otsu's threshold of the cells' log Hessian traces, the split of the grid's cells
  into the two groups with the largest between-group variance (Otsu 1979), placed half-way (in
  log) between the two traces it separates. Curvature spans orders of magnitude between zoos
  (10 to 1e5 here), so only a scale-free, per-grid rule can serve all of them.
* ``τ_cka``: Otsu's threshold of the (unbiased) CKA values of the cells it splits: the phase-IV
  cells (smooth, converged, |mc| ≤ τ_mc under the three thresholds above). CKA only separates
  IV-A from IV-B, so its threshold is calibrated on that population; over all cells Otsu's cut
  falls between rugged and smooth cells (an under-trained grid disagrees with itself) and repeats
  what loss and trace already say, leaving IV-A empty in every zoo. The split is used only where
  the two groups are apart by more than noise: the gap between their mean CKA must exceed
  :data:`CKA_STANDARD_ERRORS` standard errors of a cell's mean CKA (the median within-cell sd of
  pair CKA over √pairs, as for τ_mc). Otherwise (fewer than two phase-IV cells, or one
  population) ``τ_cka = 0.5``: half-way from chance (0 for the unbiased estimator) to identical
  functions, recorded as a fallback with the reason. ``all_cells_otsu`` keeps the all-cell cut
  for comparison.
* ``τ_mc = 3 · s / √P``: three standard errors of a cell's mean mc, from s, the median over
  cells of the standard deviation of mc between the cell's seed pairs, and P, the median number
  of pairs per cell. mc within three standard errors of 0 is "connected". Three, not two: at
  two a grid of 20 connected cells has a false barrier or dip in one cell on average (5% each),
  and the pairs of a cell share seeds, so they are not independent and s/√P is optimistic.
  With one pair per cell s cannot be measured, and :data:`FALLBACK_MC` is used and reported as
  such.

A two-group split always finds two groups, also where a grid holds only one population: the
report prints each threshold with its inputs and :func:`threshold_sensitivity` shows which cells
move when it moves. A zoo's YAML ``phases:`` section may fix any threshold instead; the default
zoos do not.

Coverage (:meth:`PhaseMap.coverage`): which of the five phases a grid shows, and for each absent
one the measurement closest to it (the extreme mc of the region against ±τ_mc, or the CKA range
of the connected smooth cells against τ_cka), so that a missing phase comes with its evidence.

Confidence (:func:`label_confidence`): the share of bootstrap resamples that give the modal phase,
resampling the cell's seeds with replacement (pairs: those among the distinct drawn seeds) and
each member's Hessian trace within its standard error (normal noise); thresholds stay fixed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

PHASES = ("I", "II", "III", "IV-A", "IV-B")
#: a cell whose sign pattern is none of the taxonomy's five, or whose curves did not converge
UNASSIGNED = "unassigned"
#: every label a cell can get (``None`` aside: a missing metric)
LABELS = PHASES + (UNASSIGNED,)
THRESHOLD_NAMES = ("train_loss", "hessian_trace", "mc", "cka")
#: τ_mc when the spread between a cell's seed pairs cannot be measured (one pair per cell)
FALLBACK_MC = 0.02
#: |mc| within this many standard errors of 0 counts as connected
MC_STANDARD_ERRORS = 3
#: bootstrap resamples per cell and the confidence below which a label is marked doubtful
BOOTSTRAP_DRAWS = 400
CONFIDENT = 0.8
#: the CKA groups of phase-IV cells must be this many standard errors apart to be split
CKA_STANDARD_ERRORS = 3
#: τ_cka when phase IV cannot be split: half-way from chance (0) to identical functions (1)
FALLBACK_CKA = 0.5
#: the training-side columns calibration may read from the cells (test columns never reach it);
#: the mc column and ``curve_converged`` select the phase-IV cells for τ_cka
CALIBRATION_COLUMNS = ("train_loss", "hessian_trace", "cka", "curve_converged",
                       "mc_error", "mc_loss", "mc_error_chord", "mc_loss_chord")


@dataclass(frozen=True)
class PhaseThresholds:
    """Phase thresholds (see the module docstring for the rule). ``None`` = calibrate it.

    ``mc_metric`` names the mode-connectivity quantity (``mc_error`` for classification,
    ``mc_loss`` where the error is not meaningful: language models); ``mc_reference`` whether it
    is referenced to the chord between the endpoints (``chord``, default) or to their mean
    (``mean``, the paper's definition).
    """

    train_loss: float | None = None
    hessian_trace: float | None = None
    mc: float | None = None
    cka: float | None = None
    mc_metric: str = "mc_error"
    mc_reference: str = "chord"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "PhaseThresholds":
        m = dict(m or {})
        unknown = set(m) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown phase threshold {sorted(unknown)[0]!r}; "
                             f"known: {', '.join(cls.__dataclass_fields__)}")
        t = cls(**m)
        for name in THRESHOLD_NAMES:
            v = getattr(t, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"phase threshold {name} must be a non-negative number, got {v!r}")
        if t.mc_metric not in ("mc_error", "mc_loss"):
            raise ValueError(f"phase threshold mc_metric must be mc_error or mc_loss, got {t.mc_metric!r}")
        if t.mc_reference not in ("chord", "mean"):
            raise ValueError(f"phase threshold mc_reference must be chord or mean, got {t.mc_reference!r}")
        return replace(t, **{k: float(getattr(t, k)) for k in THRESHOLD_NAMES if getattr(t, k) is not None})

    @property
    def mc_column(self) -> str:
        """The table column the rule reads: e.g. ``mc_error_chord`` or ``mc_error``."""
        return f"{self.mc_metric}_chord" if self.mc_reference == "chord" else self.mc_metric

    @property
    def complete(self) -> bool:
        return all(getattr(self, k) is not None for k in THRESHOLD_NAMES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: nothing fixed: every threshold calibrated, chord-referenced mc on the error
DEFAULT_THRESHOLDS = PhaseThresholds()


def is_missing(v: Any) -> bool:
    """None, NaN or ``pd.NA``: a value a table does not have."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def classify_cell(train_loss: float, hessian_trace: float, mc: float, cka: float,
                  thresholds: PhaseThresholds, converged: bool = True) -> str | None:
    """The phase of one cell from its seed-averaged metrics (module docstring): one of
    :data:`PHASES`, :data:`UNASSIGNED` for another sign pattern or unconverged curves, or None
    when a metric is missing. ``thresholds`` must be complete (no None)."""
    if not thresholds.complete:
        raise ValueError("classify_cell needs every threshold; calibrate them first (calibrate_thresholds)")
    if any(is_missing(v) for v in (train_loss, hessian_trace, mc, cka)):
        return None
    if not converged:
        return UNASSIGNED
    rugged = train_loss >= thresholds.train_loss or hessian_trace >= thresholds.hessian_trace
    if mc < -thresholds.mc:
        return "I" if rugged else "III"
    if mc > thresholds.mc:
        return "II" if rugged else UNASSIGNED
    if rugged:
        return UNASSIGNED
    return "IV-B" if cka >= thresholds.cka else "IV-A"


def _as_converged(v: Any) -> bool:
    """A stored curve verdict as a bool: a missing one (no curve measured) counts as converged."""
    return True if is_missing(v) else bool(v)


def _converged(row: Mapping[str, Any]) -> bool:
    return _as_converged(row.get("curve_converged", True))


def _converged_cells(cells: pd.DataFrame) -> pd.Series:
    """:func:`_as_converged` of every row of a cell table (all True without the column)."""
    if "curve_converged" not in cells:
        return pd.Series(True, index=cells.index)
    return cells["curve_converged"].map(_as_converged)


def classify_cells(cells: pd.DataFrame, thresholds: PhaseThresholds) -> pd.Series:
    """Phase of every row of a cell table with columns ``train_loss``, ``hessian_trace``,
    ``cka``, ``thresholds.mc_column`` and optionally ``curve_converged``; a Series aligned with
    ``cells``."""
    mc_col = thresholds.mc_column
    return pd.Series(
        [classify_cell(r["train_loss"], r["hessian_trace"], r[mc_col], r["cka"], thresholds, _converged(r))
         for _, r in cells.iterrows()],
        index=cells.index, name="phase", dtype=object,
    )


def cell_table(members: pd.DataFrame, load: str, temperature: str) -> pd.DataFrame:
    """Seed-average a member table into one row per (load, temperature) cell.

    Member-level columns (train loss, test accuracy, Hessian) are averaged over the members
    that have them (diverged members carry NaN and drop out); cell-level columns (cka, mc_*)
    are the same on each member of a cell and are taken as they are. ``curve_converged`` is
    carried as a boolean (False if any pair's curve did not converge).
    """
    numeric = [c for c in members.columns if c not in (load, temperature)
               and pd.api.types.is_numeric_dtype(members[c]) and c != "seed"
               and not pd.api.types.is_bool_dtype(members[c])]
    grouped = members.groupby([load, temperature], sort=True)
    cells = grouped[numeric].mean()
    cells["seeds"] = grouped.size()
    if "status" in members:
        cells["completed"] = grouped["status"].apply(lambda s: int((s == "done").sum()))
    if "curve_converged" in members:
        cells["curve_converged"] = grouped["curve_converged"].apply(
            lambda s: bool(s.dropna().astype(bool).all()) if s.notna().any() else math.nan)
    return cells.reset_index()


# ----------------------------------------------------------------------------- calibration


def otsu_threshold(values: Any) -> float:
    """Otsu's (1979) two-group split of ``values``: the cut between consecutive sorted values that
    maximises the between-group variance ``w₀ w₁ (μ₀ − μ₁)²``, returned half-way between the two
    values it separates (first best cut on ties). ``nan`` for fewer than 2 distinct values."""
    v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(np.asarray(values, dtype=np.float64))])
    if len(np.unique(v)) < 2:
        return math.nan
    best, cut = -1.0, 0
    n = len(v)
    for k in range(1, n):
        if v[k] == v[k - 1]:
            continue  # a cut must fall between distinct values
        w0, w1 = k / n, (n - k) / n
        between = w0 * w1 * (v[:k].mean() - v[k:].mean()) ** 2
        if between > best + 1e-15:
            best, cut = between, k
    return float((v[cut - 1] + v[cut]) / 2)


def calibrate_thresholds(cells: pd.DataFrame, pairs: pd.DataFrame, init_loss: float,
                         given: PhaseThresholds = DEFAULT_THRESHOLDS,
                         cell_keys: tuple[str, str] | None = None) -> tuple[PhaseThresholds, dict[str, dict]]:
    """Complete ``given`` with calibrated thresholds (module docstring) and say how each was set.

    ``cells``: one row per cell with ``train_loss``, ``hessian_trace`` and ``cka`` (only these
    columns are read: :data:`CALIBRATION_COLUMNS`). ``pairs``: one row per seed pair with the
    cell coordinates ``cell_keys`` (default: the first two columns of ``cells``) and the mc
    column ``given.mc_column``. ``init_loss``: the train loss at initialisation.

    Returns ``(thresholds, calibration)``: ``calibration[name]`` holds ``value``, ``source``
    (``"spec"``, ``"calibrated"`` or ``"fallback"``), the ``rule`` in words and its inputs.
    """
    keys = list(cell_keys or cells.columns[:2])
    local = cells[[c for c in CALIBRATION_COLUMNS if c in cells]]
    out: dict[str, dict] = {}
    chosen: dict[str, float] = {}

    def record(name: str, value: float, source: str, rule: str, **inputs: Any) -> None:
        chosen[name] = float(value)
        out[name] = {"value": float(value), "source": source, "rule": rule, **inputs}

    for name in THRESHOLD_NAMES:
        fixed = getattr(given, name)
        if fixed is not None:
            record(name, fixed, "spec", "fixed in the zoo spec's phases section")

    if "train_loss" not in chosen:
        loss = local["train_loss"].dropna() if "train_loss" in local else pd.Series(dtype=float)
        best = float(loss[loss > 0].min()) if (loss > 0).any() else math.nan
        if math.isfinite(init_loss) and init_loss > 0 and math.isfinite(best) and best < init_loss:
            record("train_loss", math.sqrt(init_loss * best), "calibrated",
                   "geometric midpoint of the loss at initialisation and the best cell's train loss",
                   init_loss=float(init_loss), best_cell_loss=best)
        else:  # nothing learned (or no data): every cell is unfitted
            record("train_loss", init_loss if math.isfinite(init_loss) else 0.0, "fallback",
                   "no cell went below the loss at initialisation", init_loss=float(init_loss),
                   best_cell_loss=best)

    if "hessian_trace" not in chosen:
        tr = local["hessian_trace"].dropna() if "hessian_trace" in local else pd.Series(dtype=float)
        positive = tr[tr > 0]
        cut = otsu_threshold(np.log10(positive)) if len(positive) else math.nan
        if math.isfinite(cut):
            record("hessian_trace", 10 ** cut, "calibrated", "Otsu split of the cells' log10 Hessian traces",
                   cells=int(len(positive)), min=float(positive.min()), max=float(positive.max()))
        else:
            record("hessian_trace", math.inf, "fallback", "fewer than 2 distinct positive traces: none rugged",
                   cells=int(len(positive)))

    if "mc" not in chosen:
        col = given.mc_column
        s, p, n = _within_cell_se(pairs, keys, col)
        if n:
            record("mc", MC_STANDARD_ERRORS * s / math.sqrt(p), "calibrated",
                   f"{MC_STANDARD_ERRORS} x (median within-cell sd of pair mc) / sqrt(pairs per cell)",
                   within_cell_sd=s, pairs_per_cell=p, cells=n, column=col)
        else:
            record("mc", FALLBACK_MC, "fallback",
                   f"one seed pair per cell: the spread cannot be measured; {FALLBACK_MC} used", column=col)

    if "cka" not in chosen:
        _calibrate_cka(local, cells[keys], pairs, keys, replace(given, **chosen), record)

    return replace(given, **chosen), out


def _n(k: int, what: str = "") -> str:
    """``3 smooth cells``, ``1 smooth cell``."""
    return f"{k} {what + ' ' if what else ''}cell{'' if k == 1 else 's'}"


def _within_cell_se(pairs: pd.DataFrame, keys: list[str], col: str) -> tuple[float, float, int]:
    """(s, P, cells): the median over cells of the sd of ``col`` between a cell's seed pairs and
    the median number of pairs per cell (cells with at least 2 pairs); s is NaN without any."""
    by = pairs.dropna(subset=[col]).groupby(keys)[col] if col in pairs and len(pairs) else None
    sds = by.std(ddof=1).dropna() if by is not None else pd.Series(dtype=float)
    if not len(sds):
        return math.nan, math.nan, 0
    counts = by.size()
    return float(sds.median()), float(counts[counts >= 2].median()), int(len(sds))


def _calibrate_cka(local: pd.DataFrame, coords: pd.DataFrame, pairs: pd.DataFrame, keys: list[str],
                   partial: PhaseThresholds, record) -> None:
    """τ_cka from the CKA of the phase-IV cells (module docstring). ``local``: the cells'
    calibration columns, ``coords`` their coordinates (columns ``keys``), ``partial`` the
    already chosen loss, trace and mc thresholds."""
    cka_all = local["cka"].dropna() if "cka" in local else pd.Series(dtype=float)
    all_cut = otsu_threshold(cka_all)
    mc_col = partial.mc_column
    iv = pd.Series(False, index=local.index)
    if {"train_loss", "hessian_trace", mc_col} <= set(local):
        iv = ((local["train_loss"] < partial.train_loss) & (local["hessian_trace"] < partial.hessian_trace)
              & (local[mc_col].abs() <= partial.mc) & _converged_cells(local))
    cka = local.loc[iv, "cka"].dropna() if "cka" in local else pd.Series(dtype=float)
    inputs = {"phase_iv_cells": int(len(cka)), "all_cells_otsu": all_cut}
    cut = otsu_threshold(cka)
    if not math.isfinite(cut):
        record("cka", FALLBACK_CKA, "fallback",
               f"fewer than 2 distinct CKA values among phase-IV cells: {FALLBACK_CKA}, half-way "
               "between chance (0) and identical functions (1)", **inputs)
        return
    lo, hi = cka[cka < cut], cka[cka >= cut]
    gap = float(hi.mean() - lo.mean())
    # the noise of the population being split: the seed pairs of the phase-IV cells
    iv_pairs = pairs.merge(coords[iv].drop_duplicates(), on=keys) if set(keys) <= set(pairs) else pairs.iloc[:0]
    s, p, _ = _within_cell_se(iv_pairs, keys, "cka")
    se = s / math.sqrt(p) if math.isfinite(s) and p > 0 else math.nan
    inputs.update(gap=gap, cell_se=se, min=float(cka.min()), max=float(cka.max()))
    if math.isfinite(se) and gap > CKA_STANDARD_ERRORS * se:
        record("cka", cut, "calibrated",
               f"Otsu split of the phase-IV cells' CKA (groups {gap:.3f} apart > "
               f"{CKA_STANDARD_ERRORS} x cell SE {se:.3f})", **inputs)
    else:
        why = "the cell SE cannot be measured" if not math.isfinite(se) else \
            f"groups {gap:.3f} apart <= {CKA_STANDARD_ERRORS} x cell SE {se:.3f}"
        record("cka", FALLBACK_CKA, "fallback",
               f"phase-IV CKA is one population ({why}): {FALLBACK_CKA}, half-way between chance "
               "(0) and identical functions (1)", **inputs)


# ----------------------------------------------------------------------------- confidence


def label_confidence(members: pd.DataFrame, pairs: pd.DataFrame, thresholds: PhaseThresholds,
                     load: str, temperature: str, *, draws: int = BOOTSTRAP_DRAWS,
                     seed: int = 0) -> pd.DataFrame:
    """Bootstrap each cell's label: one row per cell with ``phase_modal``, ``phase_confidence``
    (the share of valid resamples giving the modal label) and ``bootstrap_draws`` (valid ones).

    ``members``: one row per done member with ``load``, ``temperature``, ``seed``,
    ``train_loss``, ``hessian_trace`` and optionally ``hessian_trace_stderr``. ``pairs``: one row
    per seed pair with ``load``, ``temperature``, ``seed_a``, ``seed_b``, ``cka``, the mc column
    and optionally ``curve_converged``. A resample draws the cell's seeds with replacement; the
    cell's train loss and trace are means over the drawn seeds (with multiplicity), each trace
    perturbed by ``stderr × N(0, 1)``; its mc and CKA are means over the pairs between distinct
    drawn seeds. A resample with fewer than 2 distinct seeds has no pair and is not counted.
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    mc_col = thresholds.mc_column
    rows = []
    pair_groups = {k: g for k, g in pairs.groupby([load, temperature])} if len(pairs) else {}
    for key, g in members.groupby([load, temperature], sort=True):
        g = g.dropna(subset=["train_loss", "hessian_trace"])
        seeds = list(g["seed"])
        loss = dict(zip(g["seed"], g["train_loss"]))
        trace = dict(zip(g["seed"], g["hessian_trace"]))
        se = dict(zip(g["seed"], g["hessian_trace_stderr"].fillna(0.0))) if "hessian_trace_stderr" in g \
            else dict.fromkeys(seeds, 0.0)
        pg = pair_groups.get(key)
        pair_vals = {}
        if pg is not None:
            for _, r in pg.iterrows():
                pair_vals[frozenset((r["seed_a"], r["seed_b"]))] = (r[mc_col], r["cka"], _converged(r))
        labels: list[str | None] = []
        if len(seeds) >= 2 and pair_vals:
            for _ in range(draws):
                drawn = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
                noise = rng.standard_normal(len(drawn))
                distinct = sorted(set(drawn))
                if len(distinct) < 2:
                    continue
                found = [pair_vals[frozenset((a, b))] for i, a in enumerate(distinct) for b in distinct[i + 1:]
                         if frozenset((a, b)) in pair_vals]
                if not found:
                    continue
                mcs = [f[0] for f in found if not is_missing(f[0])]
                ckas = [f[1] for f in found if not is_missing(f[1])]
                labels.append(classify_cell(
                    float(np.mean([loss[s] for s in drawn])),
                    float(np.mean([trace[s] + se[s] * z for s, z in zip(drawn, noise)])),
                    float(np.mean(mcs)) if mcs else math.nan, float(np.mean(ckas)) if ckas else math.nan,
                    thresholds, all(f[2] for f in found)))
        counts = Counter(labels)
        modal, n_modal = counts.most_common(1)[0] if counts else (None, 0)
        rows.append({load: key[0], temperature: key[1], "phase_modal": modal,
                     "phase_confidence": n_modal / len(labels) if labels else math.nan,
                     "bootstrap_draws": len(labels)})
    return pd.DataFrame(rows, columns=[load, temperature, "phase_modal", "phase_confidence", "bootstrap_draws"])


# ----------------------------------------------------------------------------- the phase map


@dataclass
class PhaseMap:
    """A zoo's phases at one epoch: ``cells`` (one row per cell: seed means, ``phase``, the
    alternative labels of :data:`ALTERNATIVES` (``phase_mc_mean``: the paper's endpoint-mean mc;
    ``phase_cka_paper``: the paper's biased per-batch CKA; ``phase_paper``: both), ``phase_modal``,
    ``phase_confidence``, ``bootstrap_draws``), the ``thresholds`` used and how each was set
    (``calibration``)."""

    cells: pd.DataFrame
    thresholds: PhaseThresholds
    calibration: dict[str, dict]
    load: str
    temperature: str

    def counts(self, column: str = "phase") -> dict[str, int]:
        """Cells per label, in :data:`LABELS` order (labels with no cell left out)."""
        c = Counter(v for v in self.cells[column] if v is not None)
        return {p: c[p] for p in LABELS if c[p]}

    def confident(self) -> int:
        """Cells whose label has confidence ≥ :data:`CONFIDENT`."""
        return int((self.cells["phase_confidence"] >= CONFIDENT).sum())

    def differences(self, column: str) -> int:
        """Cells whose label differs between ``phase`` and an alternative column."""
        a = self.cells["phase"].astype(object).where(self.cells["phase"].notna(), "-")
        b = self.cells[column].astype(object).where(self.cells[column].notna(), "-")
        return int((a != b).sum())

    def coverage(self) -> pd.DataFrame:
        """Which of the five phases the grid shows, and for each absent one the measurement
        closest to it: one row per phase with ``cells``, ``confident`` (cells with confidence
        ≥ :data:`CONFIDENT`) and ``evidence`` (in words, with the numbers and thresholds).

        A phase needs its sign pattern on a cell with converged curves, so the evidence reads the
        converged cells of the region the phase belongs to (rugged or smooth) and reports the
        extreme mc there against ±τ_mc (I, II, III), or the CKA range of the smooth, connected
        cells against τ_cka (IV-A, IV-B); unconverged cells of the region are counted apart.
        """
        t, c = self.thresholds, self.cells
        if not len(c) or t.mc_column not in c:
            return pd.DataFrame(columns=["phase", "cells", "confident", "evidence"])
        rugged = (c["train_loss"] >= t.train_loss) | (c["hessian_trace"] >= t.hessian_trace)
        conv = _converged_cells(c)
        mc, tau = c[t.mc_column], t.mc
        rows = []
        for phase in PHASES:
            here = c["phase"] == phase
            n, conf = int(here.sum()), int((here & (c["phase_confidence"] >= CONFIDENT)).sum())
            region = rugged if phase in ("I", "II") else ~rugged
            name = "rugged" if phase in ("I", "II") else "smooth"
            ok = region & conv & mc.notna()
            unconv = int((region & ~conv).sum())
            if n:
                evidence = f"{_n(n)}, {conf} confident"
            elif not region.any():
                evidence = f"no {name} cell in the grid"
            elif not ok.any():
                evidence = f"all {int(region.sum())} {name} cells have unconverged curves"
            elif phase in ("I", "III"):
                evidence = (f"no barrier among {_n(int(ok.sum()), name)} with converged curves: "
                            f"lowest mc {mc[ok].min():+.4f} > −τ_mc = {-tau:.4f}")
            elif phase == "II":
                evidence = (f"no {name} cell with mc > τ_mc = {tau:.4f}: highest {mc[ok].max():+.4f} "
                            f"among {_n(int(ok.sum()), name)} with converged curves")
            else:
                connected = ok & (mc.abs() <= tau)
                if not connected.any():
                    evidence = (f"no {name} cell is connected (|mc| ≤ {tau:.4f}): mc from "
                                f"{mc[ok].min():+.4f} to {mc[ok].max():+.4f} on {_n(int(ok.sum()), name)} with "
                                "converged curves")
                else:
                    k = c.loc[connected, "cka"]
                    side = "below" if phase == "IV-A" else "at or above"
                    evidence = (f"no connected smooth cell with CKA {side} τ_cka = {t.cka:.3f}: "
                                f"CKA {k.min():.3f} to {k.max():.3f} on {_n(int(connected.sum()), 'connected')}")
            if unconv and not n:
                evidence += f"; {_n(unconv, name)} left unassigned (unconverged curves)"
            rows.append({"phase": phase, "cells": n, "confident": conf, "evidence": evidence})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        keep = [self.load, self.temperature, "phase", *ALTERNATIVES, "phase_modal", "phase_confidence",
                "bootstrap_draws"]
        return {"thresholds": self.thresholds.to_dict(), "calibration": self.calibration,
                "counts": self.counts(), "confident_cells": self.confident(),
                "differences": {c: self.differences(c) for c in ALTERNATIVES if c in self.cells},
                "coverage": self.coverage().to_dict(orient="records"),
                "cells": self.cells[[c for c in keep if c in self.cells]].to_dict(orient="records")}


def phase_map(members: pd.DataFrame, pairs: pd.DataFrame, load: str, temperature: str,
              given: PhaseThresholds = DEFAULT_THRESHOLDS, *, init_loss: float = math.nan,
              draws: int = BOOTSTRAP_DRAWS) -> PhaseMap:
    """Calibrate, classify and bootstrap the cells of a zoo.

    ``members``: the done members (seed, the two axes, ``train_loss``, ``hessian_trace``,
    ``hessian_trace_stderr``, and the cell columns repeated on each member: ``cka``,
    ``cka_paper``, ``mc_*``, ``curve_converged``); ``pairs``: one row per seed pair (see
    :func:`label_confidence`). ``init_loss``: the train loss at initialisation.
    """
    cells = cell_table(members, load, temperature)
    keys = (load, temperature)
    thresholds, calibration = calibrate_thresholds(cells, pairs, init_loss, given, keys)
    if not len(cells):
        for c in ("phase", *ALTERNATIVES, "phase_modal", "phase_confidence", "bootstrap_draws"):
            cells[c] = pd.Series(dtype=object)
        return PhaseMap(cells, thresholds, calibration, load, temperature)
    cells["phase"] = classify_cells(cells, thresholds)
    # the same rule with the paper's definitions, one at a time and together; each recalibrated
    # by the same rule on its own values (a threshold the spec fixes stays fixed)
    for column, (mean_mc, paper_cka) in ALTERNATIVES.items():
        alt_given = replace(given, mc_reference="mean") if mean_mc else given
        if alt_given.mc_column not in cells or (paper_cka and "cka_paper" not in cells):
            cells[column] = None  # the paper's values were not stored
            continue
        alt_cells = cells.assign(cka=cells["cka_paper"]) if paper_cka else cells
        alt, _ = calibrate_thresholds(alt_cells, pairs, init_loss, alt_given, keys)
        cells[column] = classify_cells(alt_cells, alt)
    conf = label_confidence(members, pairs, thresholds, load, temperature, draws=draws)
    cells = cells.merge(conf, on=[load, temperature], how="left")
    return PhaseMap(cells, thresholds, calibration, load, temperature)


#: the alternative labels a phase map carries: column -> (paper's endpoint-mean mc, paper's biased CKA)
ALTERNATIVES = {"phase_mc_mean": (True, False), "phase_cka_paper": (False, True), "phase_paper": (True, True)}
#: what each alternative label changes, in words
ALTERNATIVE_NAMES = {"phase_mc_mean": "the paper's endpoint-mean mc", "phase_cka_paper": "the paper's biased CKA",
                     "phase_paper": "both"}


def threshold_sensitivity(cells: pd.DataFrame, thresholds: PhaseThresholds,
                          factors: tuple[float, ...] = (0.75, 1.25)) -> pd.DataFrame:
    """Which cells change phase when each threshold alone is scaled by each factor.

    Returns one row per (threshold, factor): the scaled value, how many cells change phase and
    which (``load,temperature: old->new``). ``cells`` needs the classifier's columns plus the
    first two columns as the cell coordinates.
    """
    base = classify_cells(cells, thresholds)
    key_cols = list(cells.columns[:2])
    rows = []
    for name in THRESHOLD_NAMES:
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
    """A load × temperature grid of one cell column: rows the load values ascending, columns the
    temperature values ascending, every value present in ``cells`` (so grids of one table align).
    Several rows of one cell (e.g. one per seed) give its first non-missing value. A categorical
    column (the phase) comes back with None where a cell has no value, a numeric one with NaN."""
    df = cells[[load, temperature, column]]
    grid = df.groupby([load, temperature])[column].first().unstack(temperature)
    grid = grid.reindex(index=sorted(pd.unique(cells[load].dropna())),
                        columns=sorted(pd.unique(cells[temperature].dropna())))
    if pd.api.types.is_numeric_dtype(cells[column]):
        return grid.astype(float)
    return grid.astype(object).where(grid.notna(), None)
