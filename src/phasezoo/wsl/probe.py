"""Linear probes from weight statistics to model properties (the paper's §5 and Table 1).

Unterthiner et al. (2020), "Predicting Neural Network Accuracy from Weights"
(arXiv:2002.11448), show that simple per-layer weight statistics
(:func:`phasezoo.wsl.features.weight_statistics`) predict a model's test accuracy and other
properties with a linear model. The paper's Table 1 reports the R² of such probes on held-out
models for test accuracy, generalisation gap, CKA, log Hessian trace and mode connectivity.

The protocol implemented here:

1. Members are split into train and test by *grid cell* (``GroupShuffleSplit``): all seeds of one
   (width, batch size) cell land on the same side, so a probe cannot score by recognising a
   cell it has seen under another seed. Cell-level properties (CKA, mode connectivity, phase)
   are identical across a cell's seeds, which makes this split the only honest one.
2. Features are standardised, ``z = (x - mean_train) / std_train``, with the training split's
   statistics only (a constant feature has ``std = 0``; ``StandardScaler`` then uses scale 1,
   so it maps to 0 and is harmless).
3. Ridge regression, ``min_b ||y - b_0 - Z b||^2 + alpha ||b||^2``, with ``alpha`` chosen from a
   grid by group K-fold cross-validation (mean squared error) *inside the training split*.
4. Scores on the held-out split: ``R^2 = 1 - sum_i (y_i - yhat_i)^2 / sum_i (y_i - ybar)^2``
   (``ybar`` the test split's mean, so predicting a constant scores <= 0), and Kendall's tau
   between predictions and targets (the rank correlation Unterthiner et al. also report).

:func:`probe_phase` goes beyond the paper: multinomial logistic regression predicting a cell's
phase label, scored against the majority-class baseline.

One split of a mini zoo's 8–12 cells gives one noisy number, and Kaiming initialisation makes
weight variances encode the width, so a probe may only be decoding the grid coordinates.
:func:`repeated_probe` therefore repeats every probe over :data:`PROBE_REPEATS` random cell
splits (seeds 0, 1, …) and reports the mean R² with the 5th–95th percentile of the splits (a
90% interval), beside a **hyper-parameter baseline**: the same ridge protocol on the features
``log(load axis value), log(temperature axis value), epoch`` only (:func:`hparam_features`),
scored on the same splits. A weight-statistics probe beats the baseline on a property when its
R² exceeds the baseline's on at least 95% of the splits (``beats_hparams``). The phase probe is
repeated likewise against the majority baseline.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from phasezoo.analysis.report import quality_column
from phasezoo.analysis.table import zoo_table
from phasezoo.errors import PhaseZooError
from phasezoo.landscape.phases import PHASES
from phasezoo.spec import cell_of
from phasezoo.wsl.features import zoo_features
from phasezoo.zoo import Zoo

#: random cell splits of :func:`repeated_probe`, and the interval's percentiles
PROBE_REPEATS = 20
PROBE_INTERVAL = (5.0, 95.0)
#: the columns of ``phasezoo probe --csv``
PROBE_CSV_COLUMNS = ("property", "r2_test", "r2_test_ci_low", "r2_test_ci_high", "r2_hparams",
                     "kendall_tau", "n_train", "n_test")
DEFAULT_ALPHAS = np.logspace(-3, 3, 13)
DEFAULT_CS = np.logspace(-3, 3, 13)
#: the C grid of the repeated phase probe (every second value of DEFAULT_CS)
REPEATED_CS = DEFAULT_CS[::2]
DEFAULT_PROPERTIES = ("test_acc", "gen_gap", "cka", "log_hessian_trace", "mc_error")
SPLIT = "group (grid cell)"
#: Scalar keys of :func:`fit_probe`'s result that :func:`probe_properties` tabulates.
PROBE_COLUMNS = ("r2_test", "r2_train", "kendall_tau_test", "alpha", "alpha_at_edge", "n_train",
                 "n_test", "n_groups_train", "n_groups_test", "n_features", "n_dropped_nan_y",
                 "n_dropped_nonfinite_x", "split")


def _prepare(X: pd.DataFrame, target: pd.Series, groups: pd.Series, *, is_label: bool):
    """Align ``target`` and ``groups`` to ``X``'s index; drop rows with a missing target or a
    non-finite feature. Returns the clean frames and the two drop counts."""
    if not isinstance(X, pd.DataFrame):
        raise PhaseZooError("X must be a pandas DataFrame (rows: members, columns: features)")
    if X.index.has_duplicates:
        raise PhaseZooError("X has duplicate index labels")
    missing = X.index.difference(target.index).union(X.index.difference(groups.index))
    if len(missing):
        raise PhaseZooError(f"{len(missing)} rows of X have no target or group, e.g. {list(missing[:3])}")
    t = target.reindex(X.index)
    g = groups.reindex(X.index)
    if g.isna().any():
        raise PhaseZooError("groups contain missing values")
    ok_t = t.notna().to_numpy()
    if not is_label:
        t = pd.to_numeric(t, errors="coerce").astype(float)
        ok_t = np.isfinite(t.to_numpy())
    Xv = X.to_numpy(dtype=float)
    ok_x = np.isfinite(Xv).all(axis=1) if Xv.shape[1] else np.ones(len(X), bool)
    n_nan_y = int((~ok_t).sum())
    n_bad_x = int((ok_t & ~ok_x).sum())
    keep = ok_t & ok_x
    return X.loc[keep], t.loc[keep], g.loc[keep], n_nan_y, n_bad_x


def _group_split(X: pd.DataFrame, groups: pd.Series, test_size: float, seed: int):
    n_groups = groups.nunique()
    if X.shape[1] == 0:
        raise PhaseZooError("no features")
    if n_groups < 3:
        raise PhaseZooError(
            f"need at least 3 groups (grid cells) to split and cross-validate, got {n_groups}")
    gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train_idx, test_idx = next(gss.split(X, groups=groups))
    if groups.iloc[train_idx].nunique() < 2:
        raise PhaseZooError("the training split has fewer than 2 groups; lower test_size")
    return train_idx, test_idx


def _n_folds(groups_train: pd.Series, n_folds: int) -> int:
    return max(2, min(n_folds, groups_train.nunique()))


class _StandardRidge:
    """``StandardScaler`` + ``Ridge(alpha)`` fitted by one SVD: ``z = (x − μ) / σ`` (σ = 1 where
    a feature is constant, as ``StandardScaler``), ``b = V diag(s / (s² + α)) Uᵀ (y − ȳ)`` with
    ``Z = U diag(s) Vᵀ``, intercept ``ȳ``. The same estimator as the sklearn pipeline; written
    here because :func:`repeated_probe` fits it ~10⁴ times a zoo and the pipeline's
    ``GridSearchCV`` took 5 s per split of a 36-member zoo (0.05 s this way), which would add
    minutes to ``make book``."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.mu = X.mean(axis=0)
        sd = X.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        Z = (X - self.mu) / self.sd
        self.ybar = float(y.mean())
        self.U, self.s, self.Vt = np.linalg.svd(Z, full_matrices=False)
        self.Uty = self.U.T @ (y - self.ybar)
        self.alpha = math.nan

    def coef(self, alpha: float) -> np.ndarray:
        return self.Vt.T @ (self.s / (self.s ** 2 + alpha) * self.Uty)

    def predict(self, X: np.ndarray, alpha: float | None = None) -> np.ndarray:
        a = self.alpha if alpha is None else alpha
        return ((X - self.mu) / self.sd) @ self.coef(a) + self.ybar


def _choose_alpha(X: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray, n_splits: int) -> float:
    """The alpha with the lowest mean fold MSE under ``GroupKFold(n_splits)`` (first on ties),
    as ``GridSearchCV(scoring="neg_mean_squared_error")`` chooses it."""
    mse = np.zeros(len(alphas))
    for tr, va in GroupKFold(n_splits=n_splits).split(X, y, groups):
        fit = _StandardRidge(X[tr], y[tr])
        mse += np.array([np.mean((y[va] - fit.predict(X[va], a)) ** 2) for a in alphas])
    return float(alphas[int(np.argmin(mse / n_splits))])


def fit_probe(
    X: pd.DataFrame,
    y: pd.Series,
    groups: pd.Series,
    *,
    test_size: float = 0.3,
    seed: int = 0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_folds: int = 5,
) -> dict[str, Any]:
    """Ridge probe ``y ~ X`` scored on held-out groups (Unterthiner et al. 2020; Table 1).

    ``X``: features, one row per member; ``y``: the target and ``groups``: the grid cell, both
    indexed like ``X`` (aligned by index). Rows with a missing/non-finite ``y`` (diverged or
    unmeasured models) or a non-finite feature are dropped and counted.

    Protocol (see the module docstring): ``GroupShuffleSplit(test_size, seed)`` by ``groups``
    (``test_size`` is the fraction of *groups*); ``StandardScaler`` + ``Ridge`` fitted on the
    training split with ``alpha`` chosen from ``alphas`` by ``GroupKFold(min(n_folds, groups))``
    cross-validation on the training split (mean squared error), then refitted on the whole
    training split.

    Returns a dict: ``r2_test``, ``r2_train``, ``kendall_tau_test``, ``alpha``,
    ``alpha_at_edge`` (the chosen alpha is the grid's smallest or largest), ``n_train``,
    ``n_test``, ``n_groups_train``, ``n_groups_test``, ``n_features``, ``n_dropped_nan_y``,
    ``n_dropped_nonfinite_x``, ``split`` (``"group (grid cell)"``), ``train_members`` and
    ``test_members`` (index labels of each side), ``y_test`` and ``y_pred_test`` (arrays), and
    ``model`` (the fitted standardise-and-ridge estimator, ``model.predict(X)``). R² needs two
    test rows; with fewer it is NaN.
    """
    Xc, yc, gc, n_nan_y, n_bad_x = _prepare(X, y, groups, is_label=False)
    train_idx, test_idx = _group_split(Xc, gc, test_size, seed)
    Xtr, Xte = Xc.to_numpy(float)[train_idx], Xc.to_numpy(float)[test_idx]
    ytr, yte = yc.to_numpy()[train_idx], yc.to_numpy()[test_idx]
    gtr = gc.iloc[train_idx]

    alphas = np.asarray(alphas, dtype=float)
    alpha = _choose_alpha(Xtr, ytr.astype(float), gtr.to_numpy(), alphas, _n_folds(gtr, n_folds))
    model = _StandardRidge(Xtr, ytr.astype(float))
    model.alpha = alpha
    pred_tr, pred_te = model.predict(Xtr), model.predict(Xte)

    def r2(t, p):
        return float(r2_score(t, p)) if len(t) >= 2 and np.ptp(t) > 0 else math.nan

    tau = math.nan
    if len(yte) >= 2 and np.ptp(yte) > 0 and np.ptp(pred_te) > 0:
        tau = float(kendalltau(yte, pred_te).statistic)
    return {
        "r2_test": r2(yte, pred_te),
        "r2_train": r2(ytr, pred_tr),
        "kendall_tau_test": tau,
        "alpha": alpha,
        "alpha_at_edge": bool(alpha in (alphas.min(), alphas.max())),
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "n_groups_train": int(gtr.nunique()),
        "n_groups_test": int(gc.iloc[test_idx].nunique()),
        "n_features": Xc.shape[1],
        "n_dropped_nan_y": n_nan_y,
        "n_dropped_nonfinite_x": n_bad_x,
        "split": SPLIT,
        "train_members": list(Xc.index[train_idx]),
        "test_members": list(Xc.index[test_idx]),
        "y_test": yte,
        "y_pred_test": pred_te,
        "model": model,
    }


def _with_derived(table: pd.DataFrame, group_col: str, member_col: str) -> pd.DataFrame:
    t = table.copy()
    if member_col in t.columns:
        t = t.set_index(member_col, drop=False)
    if group_col not in t.columns:
        if member_col in t.columns:
            t[group_col] = [cell_of(m) for m in t[member_col]]
        elif {"width", "batch_size"} <= set(t.columns):
            t[group_col] = [f"w{int(w):04d}_b{int(b):04d}" for w, b in zip(t["width"], t["batch_size"])]
        else:
            raise PhaseZooError(f"table has no {group_col!r} column and no {member_col!r} or "
                                "width/batch_size columns to derive it from")
    if "log_hessian_trace" not in t.columns and "hessian_trace" in t.columns:
        tr = pd.to_numeric(t["hessian_trace"], errors="coerce").astype(float).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            t["log_hessian_trace"] = np.where(tr > 0, np.log(np.where(tr > 0, tr, 1.0)), np.nan)
    return t


def probe_properties(
    features: pd.DataFrame,
    table: pd.DataFrame,
    properties: Sequence[str] = DEFAULT_PROPERTIES,
    group_col: str = "cell",
    *,
    member_col: str = "member",
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Table 1 of the paper: one ridge probe (:func:`fit_probe`) per model property.

    ``features``: :func:`phasezoo.wsl.features.zoo_features` output (index: member name);
    ``table``: :func:`phasezoo.zoo_table` output (a ``member`` column plus the properties).
    Rows are matched by member name; members of the table without features are ignored.

    Derived columns: ``log_hessian_trace = log(hessian_trace)`` (NaN where the trace is <= 0 or
    missing) when absent; ``cell`` (``group_col``), the member name without ``_s<seed>``, when
    absent. Cell-level properties (``cka``, ``mc_error``) repeat over a cell's seeds; the group
    split keeps such repeats on one side.

    Returns a DataFrame indexed by property with the columns :data:`PROBE_COLUMNS` and
    ``note``: empty on success, else why the probe could not be fitted (property missing, too
    few groups with a value, ...), in which case the scores are NaN. ``fit_kwargs`` go to
    :func:`fit_probe` (``test_size``, ``seed``, ``alphas``, ``n_folds``).
    """
    t = _with_derived(table, group_col, member_col)
    if t.index.has_duplicates:
        raise PhaseZooError("table has duplicate members")
    rows = {}
    for prop in properties:
        row: dict[str, Any] = {c: math.nan for c in PROBE_COLUMNS}
        row.update(split=SPLIT, note="")
        if prop not in t.columns:
            row["note"] = f"no column {prop!r} in the table"
        else:
            feats = features.loc[features.index.isin(t.index)]
            try:
                res = fit_probe(feats, t[prop], t[group_col], **fit_kwargs)
                row.update({c: res[c] for c in PROBE_COLUMNS})
            except PhaseZooError as e:
                row["note"] = str(e)
        rows[prop] = row
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[*PROBE_COLUMNS, "note"])
    out.index.name = "property"
    return out


def _majority(labels: pd.Series) -> Any:
    """Most frequent label; ties go to the label that sorts first (as strings)."""
    counts = labels.value_counts()
    top = counts[counts == counts.max()].index
    return sorted(top, key=str)[0]


def probe_phase(
    features: pd.DataFrame,
    labels: pd.Series,
    groups: pd.Series,
    *,
    test_size: float = 0.3,
    seed: int = 0,
    Cs: Sequence[float] = DEFAULT_CS,
    n_folds: int = 5,
) -> dict[str, Any]:
    """Predict the phase label from weight statistics (beyond the paper's Table 1).

    Multinomial logistic regression, ``p(k | z) = exp(b_k . z + c_k) / sum_j exp(b_j . z + c_j)``
    on standardised features ``z``, with L2 penalty ``||b||^2 / (2C)``; ``C`` chosen from ``Cs``
    by group-aware stratified K-fold cross-validation (``StratifiedGroupKFold``, accuracy) on the
    training split only. Train/test split by ``groups`` as in :func:`fit_probe`. Rows with a
    missing label or non-finite feature are dropped and counted.

    Baseline: the majority class of the *training* split's labels (ties: first in sorted order),
    predicted for every test row; ``baseline_accuracy`` is its accuracy on the test split.

    Returns a dict: ``accuracy_test``, ``accuracy_train``, ``balanced_accuracy_test``,
    ``baseline_accuracy``, ``majority_class``, ``C``, ``classes``, ``class_counts_train``,
    ``class_counts_test`` (dicts label -> count), ``n_train``, ``n_test``, ``n_groups_train``,
    ``n_groups_test``, ``n_features``, ``n_dropped_nan_y``, ``n_dropped_nonfinite_x``,
    ``split``, ``train_members``, ``test_members``, ``y_test``, ``y_pred_test``, ``model``
    (None, and ``C`` NaN, when the training split holds a single class: then the probe predicts
    that class; ``C`` is 1 when no cross-validation fold holds two classes).
    """
    Xc, yc, gc, n_nan_y, n_bad_x = _prepare(features, labels, groups, is_label=True)
    yc = yc.astype(str)
    train_idx, test_idx = _group_split(Xc, gc, test_size, seed)
    Xtr, Xte = Xc.to_numpy(float)[train_idx], Xc.to_numpy(float)[test_idx]
    ytr, yte = yc.iloc[train_idx], yc.iloc[test_idx]
    gtr = gc.iloc[train_idx]
    majority = _majority(ytr)
    baseline = float((yte == majority).mean()) if len(yte) else math.nan

    if ytr.nunique() < 2:
        model, C = None, math.nan
        pred_tr = np.full(len(ytr), majority, dtype=object)
        pred_te = np.full(len(yte), majority, dtype=object)
    else:
        search = GridSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            {"logisticregression__C": np.asarray(Cs, dtype=float)},
            cv=StratifiedGroupKFold(n_splits=_n_folds(gtr, n_folds)),
            scoring="accuracy",
            refit=True,
        )
        with warnings.catch_warnings():
            # small classes trigger "least populated class has only k members" and fold fits
            # that see one class fail (scored NaN); neither affects the refit on the full split
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                search.fit(Xtr, ytr.to_numpy(), groups=gtr.to_numpy())
                model = search.best_estimator_
                C = float(search.best_params_["logisticregression__C"])
            except ValueError:
                # every fold's training part held a single class (tiny zoos): no C can be
                # chosen by cross-validation, so fit once with sklearn's default C = 1
                C = 1.0
                model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
                model.fit(Xtr, ytr.to_numpy())
        pred_tr, pred_te = model.predict(Xtr), model.predict(Xte)

    def counts(s: pd.Series) -> dict:
        return {k: int(v) for k, v in sorted(s.value_counts().items(), key=lambda kv: str(kv[0]))}

    with warnings.catch_warnings():
        # a test split holding one class, or predictions of classes absent from it, are fine here
        warnings.simplefilter("ignore", UserWarning)
        acc_te = float(accuracy_score(yte, pred_te)) if len(yte) else math.nan
        bacc_te = float(balanced_accuracy_score(yte, pred_te)) if len(yte) else math.nan
    return {
        "accuracy_test": acc_te,
        "accuracy_train": float(accuracy_score(ytr, pred_tr)),
        "balanced_accuracy_test": bacc_te,
        "baseline_accuracy": baseline,
        "majority_class": majority,
        "C": C,
        "classes": sorted(yc.unique(), key=str),
        "class_counts_train": counts(ytr),
        "class_counts_test": counts(yte),
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "n_groups_train": int(gtr.nunique()),
        "n_groups_test": int(gc.iloc[test_idx].nunique()),
        "n_features": Xc.shape[1],
        "n_dropped_nan_y": n_nan_y,
        "n_dropped_nonfinite_x": n_bad_x,
        "split": SPLIT,
        "train_members": list(Xc.index[train_idx]),
        "test_members": list(Xc.index[test_idx]),
        "y_test": yte.to_numpy(),
        "y_pred_test": np.asarray(pred_te),
        "model": model,
    }


def hparam_features(table: pd.DataFrame, load: str, temperature: str) -> pd.DataFrame:
    """The hyper-parameter baseline's features, one row per member (index like ``table``):
    ``log(load value)``, ``log(temperature value)`` and ``epoch`` (0 when absent). These are
    what a probe could decode from weights by recognising the grid coordinates alone."""
    out = pd.DataFrame(index=table.index)
    for col in (load, temperature):
        v = pd.to_numeric(table[col], errors="coerce").astype(float)
        out[f"log_{col}"] = np.log(v.where(v > 0))
    out["epoch"] = pd.to_numeric(table["epoch"], errors="coerce").astype(float) if "epoch" in table else 0.0
    return out


def _interval(values: Sequence[float]) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan, math.nan
    lo, hi = np.percentile(v, PROBE_INTERVAL)
    return float(v.mean()), float(lo), float(hi)


def _median(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return float(np.median(v)) if len(v) else math.nan


def repeated_probe(features: pd.DataFrame, table: pd.DataFrame, properties: Sequence[str],
                   load: str, temperature: str, *, repeats: int = PROBE_REPEATS, group_col: str = "cell",
                   member_col: str = "member", **fit_kwargs: Any) -> pd.DataFrame:
    """Table 1 over ``repeats`` random cell splits: per property, the weight-statistics probe and
    the hyper-parameter baseline (:func:`hparam_features`) fitted on the same splits (module
    docstring). Columns: :data:`PROBE_CSV_COLUMNS` plus ``r2_hparams_ci_low``,
    ``r2_hparams_ci_high``, the medians ``r2_test_median``, ``r2_hparams_median`` (R² is unbounded
    below: one split whose few test cells barely vary can drag the mean to −10³ while the median
    stays put), ``beats_hparams`` (share of splits where the probe's R² is higher),
    ``splits`` (splits with a finite R²) and ``note``. ``n_train`` / ``n_test``: members per
    side in the first split."""
    t = _with_derived(table, group_col, member_col)
    hp = hparam_features(t, load, temperature)
    # one table per split and side, every property at once (the table is derived once, above)
    splits = [tuple(probe_properties(f, t, properties, group_col, member_col=member_col,
                                     **{**fit_kwargs, "seed": k}) for f in (features, hp))
              for k in range(repeats)]
    rows = []
    for prop in properties:
        row: dict[str, Any] = {"property": prop, "note": ""}
        r2, r2h, tau, better = [], [], [], []
        n_train = n_test = math.nan
        for k, (weights, hparams) in enumerate(splits):
            a, b = weights.loc[prop], hparams.loc[prop]
            if a["note"]:
                row["note"] = a["note"]
                break
            if k == 0:
                n_train, n_test = a["n_train"], a["n_test"]
            r2.append(a["r2_test"])
            r2h.append(b["r2_test"])
            tau.append(a["kendall_tau_test"])
            if np.isfinite(a["r2_test"]) and np.isfinite(b["r2_test"]):
                better.append(a["r2_test"] > b["r2_test"])
        m, lo, hi = _interval(r2)
        mh, loh, hih = _interval(r2h)
        row.update(r2_test=m, r2_test_ci_low=lo, r2_test_ci_high=hi, r2_hparams=mh, r2_hparams_ci_low=loh,
                   r2_hparams_ci_high=hih, r2_test_median=_median(r2), r2_hparams_median=_median(r2h),
                   kendall_tau=_interval(tau)[0], n_train=n_train, n_test=n_test,
                   beats_hparams=float(np.mean(better)) if better else math.nan,
                   splits=int(np.isfinite(np.asarray(r2, dtype=float)).sum()))
        rows.append(row)
    cols = [*PROBE_CSV_COLUMNS, "r2_hparams_ci_low", "r2_hparams_ci_high", "r2_test_median",
            "r2_hparams_median", "beats_hparams", "splits", "note"]
    return pd.DataFrame(rows, columns=cols)


def repeated_phase_probe(features: pd.DataFrame, labels: pd.Series, groups: pd.Series, *,
                         repeats: int = PROBE_REPEATS, **fit_kwargs: Any) -> dict[str, Any]:
    """:func:`probe_phase` over ``repeats`` random cell splits: mean test accuracy and majority
    baseline with their 90% intervals over splits, and the interval of the paired difference
    (``gain``: accuracy − baseline, per split). Unless given, ``C`` is chosen from
    :data:`REPEATED_CS` by 3-fold cross-validation: the logistic fits dominate the probe's time
    (1.1 s a split with 13 values and 5 folds on a 36-member zoo)."""
    fit_kwargs = {"Cs": REPEATED_CS, "n_folds": 3, **fit_kwargs}
    acc, base, gain = [], [], []
    first: dict[str, Any] = {}
    for k in range(repeats):
        r = probe_phase(features, labels, groups, **{**fit_kwargs, "seed": k})
        first = first or r
        acc.append(r["accuracy_test"])
        base.append(r["baseline_accuracy"])
        gain.append(r["accuracy_test"] - r["baseline_accuracy"])
    (a, alo, ahi), (b, blo, bhi), (g, glo, ghi) = _interval(acc), _interval(base), _interval(gain)
    return {"accuracy_test": a, "accuracy_ci": (alo, ahi), "baseline_accuracy": b, "baseline_ci": (blo, bhi),
            "gain": g, "gain_ci": (glo, ghi), "splits": repeats, "classes": first["classes"],
            "n_train": first["n_train"], "n_test": first["n_test"], "majority_class": first["majority_class"]}


def zoo_probe(zoo, profile: str | None = None, root="data/zoos", *, epoch: int | str = "last", seed: int = 0,
              test_size: float = 0.3, repeats: int = PROBE_REPEATS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The probe of a stored zoo (``phasezoo probe``): weight statistics of every done member at
    ``epoch`` -> R² per property on held-out grid cells over ``repeats`` random cell splits,
    beside the hyper-parameter baseline (:func:`repeated_probe`), and the phase-label accuracy
    against the majority-class baseline (:func:`repeated_phase_probe`). ``repeats=1`` with
    ``seed`` gives the single split of that seed. Returns ``(per-property table, phase result)``."""
    z = Zoo.of(zoo, profile, root)
    spec = z.spec
    table = zoo_table(z, epoch=epoch)
    table = table[table["status"] == "done"].reset_index(drop=True)
    if table.empty:
        raise PhaseZooError(f"no finished members of {spec.name}/{z.profile} under {z.root}")
    zdir = z.store.dir
    features = zoo_features([zdir / m for m in table["member"]], epoch=epoch)
    # the task's quality (test accuracy; a PINN's test error) and the zoo's mc metric (mc_loss
    # for the language models, as the paper)

    mc = z.settings.phases.mc_metric
    properties = tuple(quality_column(table) if p == "test_acc" else mc if p == "mc_error" else p
                       for p in DEFAULT_PROPERTIES)
    if repeats > 1:
        props = repeated_probe(features, table, properties, spec.load_axis, spec.temperature_axis,
                               repeats=repeats, test_size=test_size)
    else:
        props = probe_properties(features, table, properties, seed=seed, test_size=test_size).reset_index()

    labelled = table[table["phase"].isin(PHASES)]  # unassigned cells are no phase to predict
    phase: dict[str, Any] = {"note": "no phase labels (run `phasezoo metrics` first)"}
    if labelled["phase"].nunique() >= 2:
        by_member = labelled.set_index("member")
        args = (features.loc[by_member.index], by_member["phase"], by_member.index.to_series().map(cell_of))
        phase = repeated_phase_probe(*args, repeats=repeats, test_size=test_size) if repeats > 1 else \
            probe_phase(*args, seed=seed, test_size=test_size)
    return props, phase
