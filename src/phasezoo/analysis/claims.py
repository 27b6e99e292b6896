"""The paper's qualitative claims of §4, each turned into a check that runs on a trained zoo.

Every claim is evaluated per zoo from its grid cells (seed means of the phase map's cells) and
gives one of four verdicts, with the numbers behind it:

* ``reproduced``: the zoo's cells behave as the claim says, by the rule written in the check;
* ``not reproduced``: they do not;
* ``inconclusive``: the rule's 90% bootstrap interval straddles its decision;
* ``not testable``: the zoo lacks what the claim needs (a phase, a downstream method, a domain).

Each rule computes one signed **margin**, positive when the claim holds (a difference of group
means, a correlation, a count minus what the claim needs; ±1 for yes/no rules), and decides on
its sign. :func:`check_cells` given the zoo's members adds its interval: the rule is rerun on
:data:`CLAIM_DRAWS` resampled grids, each cell's member-level values (test error, train loss,
per-member downstream scores) averaged over its seeds drawn with replacement; phase labels and
cell-level values (CKA, mc, ensemble and re-basin gains) stay as measured; for the comparisons
of phase groups the cells of each phase are drawn with replacement as well. The verdict is
``reproduced`` when the interval lies above 0, ``not reproduced`` below, else ``inconclusive``.
The rules are stated in each check's docstring, so a reader can argue with them. "Test error" is the task's error: 1 − accuracy, 1 − next-token accuracy, or the PINN's
relative L2 error; "score" is 1 − error (the downstream columns' ``acc``).

Not turned into checks: §4.1's observation that learning-rate decay enlarges phase IV (it needs
zoos trained without decay, which the paper does not publish either).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from phasezoo.analysis.table import zoo_table
from phasezoo.landscape.phases import PHASES as PHASE_LABELS
from phasezoo.landscape.phases import PhaseThresholds
from phasezoo.landscape.runner import zoo_phase_map
from phasezoo.zoo import Zoo

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable"
INCONCLUSIVE = "inconclusive"
#: resampled grids per claim interval, and the interval's coverage
CLAIM_DRAWS = 200
CLAIM_LEVEL = 0.90
#: the paper's full coverage: phases_emerge needs this many of the five phases
MIN_PHASES = 4

#: phases with a barrier between seeds (mc < −τ) and phases without one
BARRIER_PHASES = ("I", "III")
CONNECTED_PHASES = ("II", "IV-A", "IV-B")
WELL_TRAINED = ("IV-A", "IV-B")
#: a claim's "high sparsity" (the largest pruning level every zoo computes by default)
PRUNE_SPARSITY = 0.9
#: one grid step into the high-temperature, low-load corner is "sharp" when it moves test error
#: by at least this fraction of the zoo's whole test-error range
SHARP_STEP = 0.25


@dataclass(frozen=True)
class ZooContext:
    """What a check needs to know about a zoo besides its cells."""

    name: str
    task: str
    arch: str
    load: str
    temperature: str
    thresholds: PhaseThresholds
    #: how load and temperature change as their axis values grow (the spec's axis_directions)
    load_direction: str = "decreasing"
    temperature_direction: str = "decreasing"

    def low_load_first(self, values) -> list:
        """The load axis values ordered from the lowest load to the highest."""
        return sorted(values, reverse=self.load_direction == "decreasing")

    def high_temperature_first(self, values) -> list:
        """The temperature axis values ordered from the highest temperature to the lowest."""
        return sorted(values, reverse=self.temperature_direction == "increasing")


@dataclass(frozen=True)
class Verdict:
    status: str
    evidence: str
    #: signed: > 0 the claim holds by its rule, < 0 it does not (NaN when not testable)
    margin: float = math.nan


def _decide(margin: float, evidence: str) -> Verdict:
    return Verdict(REPRODUCED if margin > 0 else NOT_REPRODUCED, evidence, float(margin))


@dataclass(frozen=True)
class Claim:
    key: str
    section: str
    statement: str
    check: Callable[[pd.DataFrame, ZooContext], Verdict]
    #: the paper's figures that show what the statement describes
    figures: str = ""
    #: a comparison of phase groups: its bootstrap also resamples the cells within each phase
    #: (rules that read grid positions keep the grid)
    by_phase: bool = False

    @property
    def page(self) -> str:
        """The book page whose figures and tables show the claim's evidence for a zoo, relative
        to the claims page (``{zoo}`` is the zoo's page name): the cross-zoo comparison for the
        transformer corner, the zoo's downstream page for §4.2, else its phase page."""
        if self.key == "transformer_corner":
            return "comparison.html"
        return "downstream/{zoo}.html" if self.section == "4.2" else "phases/{zoo}.html"


def _fmt(x: float) -> str:
    return "nan" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _phase_means(cells: pd.DataFrame, column: str) -> pd.Series:
    ok = cells.dropna(subset=[column, "phase"])
    return ok.groupby("phase")[column].mean()


def _group_mean(cells: pd.DataFrame, column: str, phases: Sequence[str]) -> tuple[float, int]:
    sel = cells[cells["phase"].isin(phases)][column].dropna()
    return (float(sel.mean()) if len(sel) else float("nan")), len(sel)


def _has(cells: pd.DataFrame, column: str) -> bool:
    return column in cells and cells[column].notna().any()


def _spearman(a: pd.Series, b: pd.Series) -> float:
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or a[ok].nunique() < 2 or b[ok].nunique() < 2:
        return float("nan")
    return float(a[ok].rank().corr(b[ok].rank()))


def _compare_groups(cells: pd.DataFrame, column: str, better: Sequence[str], worse: Sequence[str],
                    label_better: str, label_worse: str) -> Verdict:
    """Margin: the mean of ``column`` over the ``better`` phases' cells minus that over ``worse``."""
    if not _has(cells, column):
        return Verdict(NOT_TESTABLE, f"no {column} in this zoo")
    hi, n_hi = _group_mean(cells, column, better)
    lo, n_lo = _group_mean(cells, column, worse)
    if n_hi == 0 or n_lo == 0:
        present = ", ".join(sorted(cells["phase"].dropna().unique()))
        return Verdict(NOT_TESTABLE, f"needs cells in both {label_better} and {label_worse}; phases present: {present}")
    return _decide(hi - lo, f"mean {column}: {label_better} {_fmt(hi)} ({n_hi} cells) vs "
                            f"{label_worse} {_fmt(lo)} ({n_lo} cells)")


def _best_against_best_other(cells: pd.DataFrame, column: str, phase: str, higher_better: bool) -> Verdict:
    """Margin: how much ``phase``'s mean ``column`` beats the best of the other phases' means
    (unassigned cells are no phase)."""
    if not _has(cells, column):
        return Verdict(NOT_TESTABLE, f"no {column} in this zoo")
    means = _phase_means(cells[cells["phase"].isin(PHASE_LABELS)], column)
    ev = f"mean {column} per phase: " + ", ".join(f"{p} {_fmt(v)}" for p, v in means.items())
    if phase not in means or len(means) < 2:
        return Verdict(NOT_TESTABLE, ev + (f" (no phase {phase})" if phase not in means else " (one phase)"))
    others = means.drop(phase)
    best = others.idxmax() if higher_better else others.idxmin()
    diff = (means[phase] - others[best]) if higher_better else (others[best] - means[phase])
    return _decide(diff, ev + f"; {phase} against the best other phase, {best}: {_fmt(diff)}")


# ---------------------------------------------------------------------------------------------
# §4.1: phases emerge across all zoos


def phases_emerge(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """The paper validates full coverage: at least :data:`MIN_PHASES` of the five phases in the
    zoo's grid (unassigned cells are no phase). Margin: phases present − 3.5."""
    counts = cells["phase"].value_counts()
    if counts.empty:
        return Verdict(NOT_TESTABLE, "no classified cells")
    present = [p for p in PHASE_LABELS if p in counts]
    ev = ", ".join(f"{p}: {n}" for p, n in counts.items())
    return _decide(len(present) - (MIN_PHASES - 0.5),
                   f"{len(present)} of the 5 phases (needs {MIN_PHASES}); cells per label: {ev}")


def best_phase_is_ivb(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """IV-B has a lower mean test error than the best other phase present (IV-A included, which
    the paper contrasts with it). Margin: the best other phase's mean test error minus IV-B's.
    Not testable without IV-B cells or with a single phase."""
    return _best_against_best_other(cells, "test_error", "IV-B", higher_better=False)


def best_inside_low_loss(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """The best cells (test error at or below the zoo's 25th percentile) all lie in the low
    train-loss region (train loss below the phase threshold), and that region holds more cells
    than the best ones."""
    ok = cells.dropna(subset=["test_error", "train_loss"])
    if len(ok) < 4:
        return Verdict(NOT_TESTABLE, f"{len(ok)} cells")
    best = ok[ok["test_error"] <= ok["test_error"].quantile(0.25)]
    low = ok[ok["train_loss"] < ctx.thresholds.train_loss]
    inside = int((best["train_loss"] < ctx.thresholds.train_loss).sum())
    holds = inside == len(best) and len(low) > len(best)
    return _decide(1.0 if holds else -1.0, f"{inside} of the {len(best)} best cells have train loss < "
                           f"{_fmt(ctx.thresholds.train_loss)}; the low-loss region has {len(low)} of {len(ok)} cells")


def metrics_track_test(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Low Hessian trace, high CKA and mode connectivity near zero go with low test error: across
    cells, the Spearman correlation of test error with the trace is positive, with CKA negative,
    and with |mc| positive. |mc| because both signs mark a worse cell in the taxonomy (mc < 0 a
    barrier, mc > 0 under-trained end points) and mc ≈ 0 the connected, well-trained one. (The
    paper names PINNs as an exception for the trace.)"""
    mc = ctx.thresholds.mc_column
    need = ["test_error", "hessian_trace", "cka", mc]
    if not all(_has(cells, c) for c in need):
        return Verdict(NOT_TESTABLE, "needs " + ", ".join(c for c in need if not _has(cells, c)))
    r_trace = _spearman(cells["test_error"], cells["hessian_trace"])
    r_cka = _spearman(cells["test_error"], cells["cka"])
    r_mc = _spearman(cells["test_error"], cells[mc].abs())
    margin = min(r_trace, -r_cka, r_mc)
    if not np.isfinite(margin):
        return Verdict(NOT_TESTABLE, "a correlation is undefined (fewer than 3 cells or constant values)")
    return _decide(margin, f"Spearman ρ with test error: trace {_fmt(r_trace)}, CKA {_fmt(r_cka)}, "
                           f"|{mc}| {_fmt(r_mc)}; margin = the weakest of ρ_trace, −ρ_CKA, ρ_|mc|")


def pinn_good_is_sharp(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """PINNs only: the well-performing cells have the high Hessian traces (Spearman correlation
    of test error with the trace is negative)."""
    if ctx.task != "pde_convection":
        return Verdict(NOT_TESTABLE, "a claim about PINN zoos")
    if not _has(cells, "hessian_trace"):
        return Verdict(NOT_TESTABLE, "no hessian_trace")
    r = _spearman(cells["test_error"], cells["hessian_trace"])
    if not np.isfinite(r):
        return Verdict(NOT_TESTABLE, "the correlation is undefined")
    return _decide(-r, f"Spearman ρ(test error, trace) = {_fmt(r)}")


def transformer_corner(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Transformers show a sharp transition in the high-temperature, low-load corner (the paper's
    Figure 4, top right: the widest models at the smallest batch); ResNets and PINNs do not.
    Measured as the change of test error over the last temperature step into the corner cell
    (lowest load, highest temperature, read from the spec's axis directions), as a fraction of
    the zoo's test-error range; "sharp" means at least :data:`SHARP_STEP`. Reproduced when a
    ViT/GPT zoo is sharp or another zoo is not. For PINNs the low-load end is the smallest β and
    the high-temperature end the largest learning rate."""
    ok = cells.dropna(subset=["test_error"])
    loads = ctx.low_load_first(ok[ctx.load].unique())
    temps = ctx.high_temperature_first(ok[ctx.temperature].unique())
    if len(temps) < 2 or not loads:
        return Verdict(NOT_TESTABLE, "needs two temperatures")
    at = ok.set_index([ctx.load, ctx.temperature])["test_error"]
    load0 = loads[0]
    key, prev = (load0, temps[0]), (load0, temps[1])
    if key not in at.index or prev not in at.index:
        return Verdict(NOT_TESTABLE, "corner cells missing")
    span = float(ok["test_error"].max() - ok["test_error"].min())
    step = float(at.loc[key] - at.loc[prev]) / span if span > 0 else 0.0
    sharp = abs(step) >= SHARP_STEP
    transformer = ctx.arch in ("vit", "gpt")
    # margin: how far the step is beyond SHARP_STEP on the side the claim expects
    margin = (abs(step) - SHARP_STEP) if transformer else (SHARP_STEP - abs(step))
    return _decide(margin, f"{'transformer' if transformer else ctx.arch}: test error {_fmt(at.loc[prev])} → "
                           f"{_fmt(at.loc[key])} from {ctx.temperature} {temps[1]} to {temps[0]} (towards high "
                           f"temperature) at {ctx.load} {load0} (the lowest load), {_fmt(step)} of the zoo's "
                           f"range ({'sharp' if sharp else 'smooth'})")


# ---------------------------------------------------------------------------------------------
# §4.2: phases of downstream methods


def finetune_phase_iv(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Transfer: phase IV-B (well trained, seeds agree) reaches a higher full fine-tuning accuracy
    on the target task than the best other phase, IV-A included (the paper: well-trained models
    adapt better, under- and over-fitted ones struggle). Margin: IV-B's mean minus the best other
    phase's."""
    return _best_against_best_other(cells, "finetune_full_acc", "IV-B", higher_better=True)


#: the pruning columns of a zoo table (phasezoo.downstream.runner.downstream_columns):
#: embeddings left out (``noemb``, models with embedding tables), fine-tuned (``ft``), sparsity
_PRUNE_COLUMN = re.compile(r"prune_(noemb_)?(ft_)?acc_([0-9.]+)")


def _prune_label(column: str) -> str:
    """``prune_noemb_ft_acc_0.9`` -> ``0.9 fine-tuned, without embeddings``."""
    noemb, ft, sparsity = _PRUNE_COLUMN.fullmatch(column).groups()
    extra = [w for w, on in (("fine-tuned", ft), ("without embeddings", noemb)) if on]
    return f"{sparsity} {', '.join(extra)}".strip()


def pruning_phase_iv(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Pruning: phase-IV cells *retain* more of their score at high sparsity than the other
    phases. Retention = score after magnitude pruning / the unpruned score (1 − test error), so
    a phase that starts higher does not win by starting higher. Decided at sparsity
    :data:`PRUNE_SPARSITY` without fine-tuning (margin: IV's mean retention minus I–III's); the
    evidence gives the retention at every stored sparsity, with and without the fine-tune (and,
    for models with embedding tables, with the embeddings left out of the pruning)."""
    cols = sorted(c for c in cells.columns if _PRUNE_COLUMN.fullmatch(c) and _has(cells, c))
    key = f"prune_acc_{PRUNE_SPARSITY:g}"
    if key not in cols:
        return Verdict(NOT_TESTABLE, f"no {key} in this zoo")
    score = 1.0 - cells["test_error"]
    valid = score > 0  # a PINN with relative error ≥ 1 has no score to retain
    ret = cells[valid].assign(**{c: cells.loc[valid, c] / score[valid] for c in cols})
    parts = []
    for c in cols:
        iv, _ = _group_mean(ret, c, WELL_TRAINED)
        rest, _ = _group_mean(ret, c, ("I", "II", "III"))
        parts.append(f"{_prune_label(c)}: IV {_fmt(iv)} vs I–III {_fmt(rest)}")
    v = _compare_groups(ret, key, WELL_TRAINED, ("I", "II", "III"), "IV", "I–III")
    if v.status == NOT_TESTABLE:
        return v
    return Verdict(v.status, "retention (pruned score / unpruned score) " + "; ".join(parts), v.margin)


def ensemble_connected(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Ensembling gains more where the seeds' minima are connected (phases II and IV, mc ≥ −τ)
    than where a barrier separates them (phases I and III)."""
    return _compare_groups(cells, "ensemble_gain", CONNECTED_PHASES, BARRIER_PHASES, "II/IV", "I/III")


def ensemble_region_larger(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """The high-performance region of ensembles is larger than that of single models: more cells
    have an ensemble score at or above q than a mean member score at or above q, where q is the
    mean member score of the zoo's best quarter of cells. Margin: ensemble cells − single-model
    cells."""
    if not _has(cells, "ensemble_acc"):
        return Verdict(NOT_TESTABLE, "no ensemble_acc in this zoo")
    ok = cells.dropna(subset=["ensemble_acc", "test_error"])
    score = 1.0 - ok["test_error"]
    q = float(score[score >= score.quantile(0.75)].mean())
    n_member, n_ens = int((score >= q).sum()), int((ok["ensemble_acc"] >= q).sum())
    return _decide(n_ens - n_member, f"cells with score ≥ {_fmt(q)}: {n_member} as single models, {n_ens} as ensembles (of {len(ok)})")


def wise_ft_high_temperature(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Wise-FT gains more in the rugged phases I/II than in IV. The gain is a member's test score
    at the α chosen on its train loss along ``θ(α) = (1 − α) θ_early + α θ_final`` (θ_early: the
    checkpoint at half of training) minus the final model's; margin: I/II's mean gain minus IV's."""
    return _compare_groups(cells, "wise_ft_gain", ("I", "II"), WELL_TRAINED, "I/II", "IV")


def rebasin_connected(cells: pd.DataFrame, ctx: ZooContext) -> Verdict:
    """Re-basin averaging of two seeds loses less where they are connected (II/IV) than across a
    barrier (I/III)."""
    return _compare_groups(cells, "rebasin_gain", CONNECTED_PHASES, BARRIER_PHASES, "II/IV", "I/III")


CLAIMS: tuple[Claim, ...] = (
    Claim("phases_emerge", "4.1", "Phases and phase transitions emerge in every zoo.", phases_emerge,
          figures="Figures 4, 6–17"),
    Claim("best_phase_is_ivb", "4.1", "Phase IV-B holds the best test performance.", best_phase_is_ivb,
          figures="Figures 3, 6–17", by_phase=True),
    Claim("best_inside_low_loss", "4.1",
          "The best test performance lies inside the low-train-loss region, which is larger.",
          best_inside_low_loss, figures="Figures 4, 6–17"),
    Claim("metrics_track_test", "4.1",
          "Low Hessian trace, high CKA and mode connectivity near zero go with high test performance.",
          metrics_track_test, figures="Figures 3, 4"),
    Claim("pinn_good_is_sharp", "4.1", "In PINN zoos the well-performing cells have high Hessian traces.",
          pinn_good_is_sharp, figures="Figure 17"),
    Claim("transformer_corner", "4.1",
          "Transformers have a sharp transition at high temperature and low load; ResNets and PINNs do not.",
          transformer_corner, figures="Figures 4, 8, 16"),
    Claim("finetune_phase_iv", "4.2", "Phase-IV models adapt better when fine-tuned to another task.",
          finetune_phase_iv, figures="Figures 6, 12", by_phase=True),
    Claim("pruning_phase_iv", "4.2", "Phase-IV models keep their performance better under high sparsity.",
          pruning_phase_iv, figures="Figure 5", by_phase=True),
    Claim("ensemble_connected", "4.2", "Ensembles gain more where the seeds' minima are well connected.",
          ensemble_connected, figures="Figures 5, 8", by_phase=True),
    Claim("ensemble_region_larger", "4.2",
          "The high-performance region of ensembles is larger than that of single models.",
          ensemble_region_larger, figures="Figure 5"),
    Claim("wise_ft_high_temperature", "4.2", "Wise-FT helps most in the rugged phases (I, II), little in IV.",
          wise_ft_high_temperature, figures="Figures 6–15", by_phase=True),
    Claim("rebasin_connected", "4.2", "Re-basin averaging works where mode connectivity has no barrier.",
          rebasin_connected, figures="Figures 6–15", by_phase=True),
)


def zoo_context(zoo: Zoo, thresholds: PhaseThresholds | None = None) -> ZooContext:
    """A zoo's context; ``thresholds``: the phase map's (calibrated) ones, else the spec's."""
    spec = zoo.spec
    return ZooContext(spec.name, spec.task, spec.arch, spec.load_axis, spec.temperature_axis,
                      thresholds or zoo.settings.phases, spec.load_direction, spec.temperature_direction)


def resample_cells(cells: pd.DataFrame, members: pd.DataFrame, load: str, temperature: str,
                   rng: np.random.Generator, by_phase: bool = False) -> pd.DataFrame:
    """``cells`` with each cell's member-level columns replaced by their mean over the cell's
    members drawn with replacement (one bootstrap draw of the seeds within every cell); with
    ``by_phase``, the cells of each phase label are then drawn with replacement too (as many as
    it has), so a group mean carries the spread between its cells.
    Member-level: the numeric columns of ``members`` that ``cells`` also has, except the
    coordinates, the seed and the phase columns; cell-level columns repeated on every member
    (CKA, mc, ensemble and re-basin gains) come out unchanged."""
    skip = {load, temperature, "seed", "phase_confidence", "seeds", "completed", "bootstrap_draws"}
    cols = [c for c in members.columns if c in cells.columns and c not in skip
            and pd.api.types.is_numeric_dtype(members[c]) and not pd.api.types.is_bool_dtype(members[c])]
    out = cells.copy()
    if not cols:
        return out
    pos = {k: i for i, k in enumerate(zip(out[load], out[temperature]))}
    values = out[cols].to_numpy(dtype=float, copy=True)
    for key, g in members.groupby([load, temperature], sort=False):
        if key not in pos:
            continue
        arr = g[cols].to_numpy(dtype=float)
        draw = arr[rng.integers(0, len(arr), len(arr))]
        with warnings.catch_warnings():  # an all-NaN column (e.g. diverged members) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            values[pos[key]] = np.nanmean(draw, axis=0)
    out[cols] = values
    if by_phase and "phase" in out:
        labels = out["phase"].fillna("-").to_numpy()
        idx = np.concatenate([rng.choice(np.flatnonzero(labels == lab), (labels == lab).sum())
                              for lab in pd.unique(labels)])
        out = out.iloc[np.sort(idx)].reset_index(drop=True)
    return out


def check_cells(cells: pd.DataFrame, ctx: ZooContext, claims: Sequence[Claim] = CLAIMS,
                members: pd.DataFrame | None = None, *, draws: int = CLAIM_DRAWS,
                seed: int = 0) -> pd.DataFrame:
    """One row per claim for one zoo's cells: section, key, statement, zoo, status, evidence,
    margin and, given the zoo's done ``members`` (one row per member with the two axes), the
    margin's :data:`CLAIM_LEVEL` bootstrap interval ``ci_low``, ``ci_high`` over ``draws``
    resampled grids (:func:`resample_cells`; cells within phases too for a claim ``by_phase``)
    and the status it implies (module docstring).
    Without members the status is the point estimate's."""
    rng = np.random.default_rng(seed)
    have = members is not None and len(members) > 0
    grids = {flag: [resample_cells(cells, members, ctx.load, ctx.temperature, rng, flag) for _ in range(draws)]
             if have and any(c.by_phase == flag for c in claims) else [] for flag in (False, True)}
    a = (1 - CLAIM_LEVEL) / 2
    rows = []
    for claim in claims:
        v = claim.check(cells, ctx)
        row = {"section": claim.section, "figures": claim.figures, "claim": claim.key,
               "statement": claim.statement, "zoo": ctx.name, "status": v.status, "evidence": v.evidence, "margin": v.margin,
               "ci_low": math.nan, "ci_high": math.nan}
        if v.status != NOT_TESTABLE and grids[claim.by_phase]:
            ms = np.array([claim.check(g, ctx).margin for g in grids[claim.by_phase]], dtype=float)
            ms = ms[np.isfinite(ms)]
            if len(ms):
                lo, hi = (float(x) for x in np.quantile(ms, [a, 1 - a]))
                row.update(ci_low=lo, ci_high=hi,
                           status=REPRODUCED if lo > 0 else NOT_REPRODUCED if hi < 0 else INCONCLUSIVE)
        rows.append(row)
    return pd.DataFrame(rows)


def check_claims(zoos: Sequence, profile: str | None = None, root: str | Path = "data/zoos",
                 claims: Sequence[Claim] = CLAIMS, draws: int = CLAIM_DRAWS) -> pd.DataFrame:
    """Every claim on every (trained and measured) zoo: one row per claim and zoo, with the
    bootstrap interval of each margin (:func:`check_cells`). ``zoos``: :class:`~phasezoo.zoo.Zoo`
    handles, or specs / names at ``profile`` under ``root``."""
    rows = []
    for z in (Zoo.of(s, profile, root) for s in zoos):
        members = zoo_table(z, phases=False)
        pm = zoo_phase_map(z, members=members)
        done = members[members["status"] == "done"]
        rows.append(check_cells(pm.cells, zoo_context(z, pm.thresholds), claims, done, draws=draws))
    return pd.concat(rows, ignore_index=True)


SYMBOLS = {REPRODUCED: "✔", NOT_REPRODUCED: "✘", INCONCLUSIVE: "?", NOT_TESTABLE: "–"}


def plain_doc(text: str) -> str:
    """A rule's docstring for a page that is not Sphinx-rendered: ``:role:`name``` becomes
    ```name```, with the value of a module constant beside it (``SHARP_STEP`` = 0.25)."""
    import re  # lazy: only the book's claims page needs it

    def plain(m: re.Match) -> str:
        name = m.group(2).lstrip("~").split(".")[-1]
        value = globals().get(name)
        if m.group(1) == "data" and isinstance(value, (int, float, str, tuple)):
            return f"`{name}` = {value}"
        return f"`{name}`"

    return re.sub(r":(\w+):`([^`]+)`", plain, text)


def _interval_text(row) -> tuple[str, str]:
    """The margin and its interval as text: ``("+0.12", "[+0.05, +0.20]")`` (empty where absent)."""
    if not np.isfinite(row["margin"]):
        return "", ""
    ci = (f"[{row['ci_low']:+.2g}, {row['ci_high']:+.2g}]"
          if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]) else "")
    return f"{row['margin']:+.2g}", ci


def claims_matrix_html(results: pd.DataFrame, page_names: dict[str, str] | None = None) -> str:
    """The claims matrix as an HTML table for the book: claims down, zoos across; each cell the
    verdict's mark, its margin and, below, its 90% interval (``✔ +0.12`` / ``[+0.05, +0.2]``), linked to the page
    whose figure or table shows the evidence (:attr:`Claim.page`), the rule's evidence text as
    its tooltip. ``page_names``: zoo -> page name (default: the zoo's name)."""
    from html import escape  # lazy: only the book's claims page needs it

    by_key = {c.key: c for c in CLAIMS}
    zoos = list(dict.fromkeys(results["zoo"]))
    head = "".join(f"<th>{escape(z)}</th>" for z in zoos)
    lines = ['<table class="claims-matrix">', f"<thead><tr><th>§</th><th>claim</th>{head}</tr></thead>", "<tbody>"]
    for key in [c.key for c in CLAIMS if c.key in set(results["claim"])]:
        rows = results[results["claim"] == key].set_index("zoo")
        claim = by_key[key]
        cells = []
        for z in zoos:
            if z not in rows.index:
                cells.append("<td></td>")
                continue
            r = rows.loc[z]
            margin, ci = _interval_text(r)
            text = escape(f"{SYMBOLS[r['status']]} {margin}".strip()) + (f"<br><small>{escape(ci)}</small>" if ci else "")
            href = claim.page.format(zoo=(page_names or {}).get(z, z))
            cells.append(f'<td class="{r["status"].replace(" ", "-")}"><a href="{escape(href)}" '
                         f'title="{escape(str(r["evidence"]))}">{text}</a></td>')
        lines.append(f"<tr><td>{claim.section}</td><td>{escape(claim.statement)}</td>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    # a box of its own that scrolls sideways on a narrow screen, instead of clipping the last zoos
    return '<div class="claims-matrix-box">' + "\n".join(lines) + "</div>"


def claims_matrix(results: pd.DataFrame) -> pd.DataFrame:
    """Claims down, zoos across, each cell ✔ (reproduced), ✘ (not reproduced), ? (inconclusive)
    or – (not testable)."""
    m = results.assign(mark=results["status"].map(SYMBOLS))
    out = m.pivot(index=["section", "statement"], columns="zoo", values="mark")
    order = {c.statement: i for i, c in enumerate(CLAIMS)}
    return out.sort_index(key=lambda idx: idx.map(order) if idx.name == "statement" else idx)[
        list(dict.fromkeys(results["zoo"]))]
