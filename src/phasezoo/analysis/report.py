"""Text reports of a zoo's phases: the phase map, the cell metrics, and threshold sensitivity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from phasezoo.analysis.table import full_phase_map, zoo_table
from phasezoo.downstream.runner import DOWNSTREAM_COLUMNS
from phasezoo.errors import PhaseZooError
from phasezoo.landscape.phases import (ALTERNATIVE_NAMES, ALTERNATIVES, CONFIDENT, phase_grid,
                                       threshold_sensitivity)
from phasezoo.spec import ZooSpec
from phasezoo.zoo import DEFAULT_ROOT, Zoo


def zoo_cells(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None, root: str | Path = DEFAULT_ROOT,
              *, epoch: int | str = "last") -> pd.DataFrame:
    """One row per grid cell: seed-averaged results and metrics of its done members, its phase,
    the alternative labels and the label's confidence, downstream results included
    (:func:`phasezoo.analysis.table.full_phase_map`)."""
    return full_phase_map(zoo, profile, root, epoch=epoch).cells


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def phase_report(zoo: "Zoo | str | Path | ZooSpec", profile: str | None = None, root: str | Path = DEFAULT_ROOT,
                 *, epoch: int | str = "last") -> str:
    """The phase map (rows: load, columns: temperature) and each label's confidence, the phase
    counts (unassigned and confident cells included), the coverage of the five phases with the
    evidence for each absent one (:meth:`PhaseMap.coverage`), the thresholds and how each was
    calibrated, the cell metrics, test accuracy per phase, the labels under the paper's
    definitions, and which cells change phase when each threshold moves by ±25%."""
    z = Zoo.of(zoo, profile, root)
    spec, profile = z.spec, z.profile
    pm = full_phase_map(z, epoch=epoch)
    cells = pm.cells
    if cells.empty:
        raise PhaseZooError(f"{spec.name}/{profile} has no finished member under {z.root}; "
                            "run `phasezoo train` first")
    if not cells[["hessian_trace", "cka"]].notna().any().any():
        raise PhaseZooError(f"{spec.name}/{profile} has no loss-landscape metrics at epoch {epoch}; "
                            f"run `phasezoo metrics {spec.name} --profile {profile} --epoch {epoch}` first")
    load, temp = spec.load_axis, spec.temperature_axis
    out = [f"{spec.name}/{profile}: phase map ({load} down, {temp} across)",
           phase_grid(cells, load, temp).fillna("-").to_string(), "",
           f"label confidence (share of {int(cells['bootstrap_draws'].max() or 0)} bootstrap resamples "
           f"giving the modal label; below {CONFIDENT} is doubtful)",
           phase_grid(cells, load, temp, "phase_confidence").to_string(float_format="{:.2f}".format), ""]
    counts = pm.counts()
    out += ["phase counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; confident cells (>= {CONFIDENT}): {pm.confident()} of {len(cells)}", ""]
    cov = pm.coverage()
    shown = int((cov["cells"] > 0).sum())
    out += [f"coverage: {shown} of 5 phases ({int((cov['confident'] > 0).sum())} with a confident cell); "
            "for an absent phase, the measurement closest to it"]
    out += [f"  {r.phase:>4}: {r.evidence}" for r in cov.itertuples()] + [""]
    out += ["thresholds (" + ("chord" if pm.thresholds.mc_reference == "chord" else "endpoint-mean")
            + f"-referenced {pm.thresholds.mc_metric}, unbiased CKA)"]
    for name, c in pm.calibration.items():
        inputs = ", ".join(f"{k}={_fmt(v)}" for k, v in c.items() if k not in ("value", "source", "rule"))
        out.append(f"  {name} = {c['value']:.4g}  [{c['source']}: {c['rule']}{'; ' + inputs if inputs else ''}]")
    out.append("")
    quality = quality_column(cells)
    cols = [load, temp, "train_loss", quality, "hessian_top_eig", "hessian_trace", "hessian_trace_stderr",
            "cka", "cka_chance", "cka_paper", pm.thresholds.mc_metric, pm.thresholds.mc_metric + "_chord",
            "curve_converged", "phase", "phase_confidence"]
    cols = [c for c in cols if c in cells]
    with pd.option_context("display.width", 250, "display.float_format", "{:.4g}".format):
        out += ["cell metrics (seed means)", cells[cols].to_string(index=False), ""]
        by_phase = cells.groupby("phase")[quality].agg(["count", "mean", "min", "max"])
        out += [f"{quality} by phase", by_phase.to_string(), ""]
        out += ["labels under the paper's definitions (same calibration rule): "
                + "; ".join(f"{ALTERNATIVE_NAMES[c]}: {pm.differences(c)} of {len(cells)} cells differ "
                            f"({', '.join(f'{k} {v}' for k, v in pm.counts(c).items())})" for c in ALTERNATIVES), ""]
        sens = threshold_sensitivity(cells, pm.thresholds)
        out += ["sensitivity (each threshold alone scaled)", sens.to_string(index=False)]
    return "\n".join(out)


def quality_column(df: pd.DataFrame) -> str:
    """``test_acc`` where the task reports an accuracy, else ``test_error`` (PINNs)."""
    return "test_acc" if "test_acc" in df and df["test_acc"].notna().any() else "test_error"


#: the columns of the paper's Tables 5-7, per task
SUMMARY_COLUMNS = {
    "classification": ("train_loss", "test_loss", "train_acc", "test_acc", "gen_gap"),   # Table 5
    "language_modelling": ("train_loss", "test_loss", "train_ppl", "test_ppl"),          # Table 6
    "pde_convection": ("train_loss", "test_error"),                                      # Table 7
}


def summary_table(specs: list[ZooSpec], profile: str, root: str | Path, *, digits: int = 2) -> pd.DataFrame:
    """The paper's Tables 5-7 for trained zoos: per zoo, ``mean ± std [min, max]`` of each final
    metric over its done members (std with ddof 1, as pandas). One row per zoo; the columns are
    the union of the zoos' tasks' columns (empty where a task has no such metric)."""

    def num(x: float) -> str:  # `digits` decimals; values that would print as 0.00 keep `digits` digits
        return f"{x:.{digits}f}" if x == 0 or abs(x) >= 10 ** -digits else f"{x:.{digits}g}"

    rows = []
    for spec in specs:
        df = zoo_table(spec, profile, root)
        done = df[df["status"] == "done"]
        row = {"zoo": spec.name, "arch": spec.arch, "dataset": spec.dataset, "members": len(done)}
        for col in SUMMARY_COLUMNS[spec.task]:
            v = done[col].astype(float).dropna() if col in done else pd.Series(dtype=float)
            sd = v.std() if len(v) > 1 else 0.0
            row[col] = f"{num(v.mean())} ± {num(sd)} [{num(v.min())}, {num(v.max())}]" if len(v) else ""
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


#: the paper's tables of final metrics, one per domain, each with its task's columns
SUMMARY_TABLES = {"classification": "Table 5: vision", "language_modelling": "Table 6: language",
                  "pde_convection": "Table 7: SciML"}


def summary_tables(specs: list[ZooSpec], profile: str, root: str | Path, *, digits: int = 2) -> dict[str, pd.DataFrame]:
    """The paper's Tables 5-7 as the paper sets them: one :func:`summary_table` per domain
    present among ``specs`` (vision, language, SciML), each with only its task's columns
    (:data:`SUMMARY_COLUMNS`); keyed by :data:`SUMMARY_TABLES` titles, in that order."""
    return {title: summary_table([s for s in specs if s.task == task], profile, root, digits=digits)
            for task, title in SUMMARY_TABLES.items() if any(s.task == task for s in specs)}


def downstream_by_phase(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of each downstream column (:data:`DOWNSTREAM_COLUMNS`) per phase over the finished
    members of a ``zoo_table``; one row per phase, with the member count."""
    done = table[(table["status"] == "done") & table["phase"].notna()]
    cols = [c for c in DOWNSTREAM_COLUMNS if c in done and done[c].notna().any()]
    out = done.groupby("phase")[cols].mean()
    out.insert(0, "members", done.groupby("phase").size())
    return out


#: which of the paper's hyper-parameter tables a task's zoos belong to
HYPERPARAMETER_TABLES = {"classification": "Table 2 (vision)", "language_modelling": "Table 3 (language)",
                         "pde_convection": "Table 4 (SciML)"}


def _values(values: tuple) -> str:
    """``8, 16, …, 512`` for long grids; every value for short ones."""
    shown = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return ", ".join(shown) if len(shown) <= 5 else f"{shown[0]}, {shown[1]}, …, {shown[-1]} ({len(shown)} values)"


def _augmentation(aug: Mapping[str, Any]) -> str:
    on = [k for k, v in aug.items() if v not in (None, False, 0, {}, [])]
    return ", ".join(f"{k}={aug[k]}" if not isinstance(aug[k], bool) else k for k in on) or "none"


def hyperparameter_table(specs: list[ZooSpec], profile: str = "paper") -> pd.DataFrame:
    """The paper's Tables 2–4, generated from the zoo specs: one column per zoo, one row per
    setting (grid axes and their values, seeds, members, optimiser, learning rate, momentum,
    weight decay, scheduler, epochs, initialisation, augmentation, checkpoints, architecture
    options). Zoos without ``profile`` are left out."""
    columns = {}
    for spec in specs:
        if profile not in spec.profiles:
            continue
        prof = spec.profile(profile)
        t = prof.training
        grid = dict(prof.grid)
        col = {"architecture": spec.arch, "dataset": spec.dataset, "task": spec.task,
               "model": ", ".join(f"{k}={v}" for k, v in spec.model.items()) or "defaults"}
        for key, values in grid.items():
            role = ("load" if key == spec.load_axis else "temperature" if key == spec.temperature_axis
                    else "seeds" if key == "seed" else key)
            col[role] = f"{key}: {_values(tuple(values))}" if role != "seeds" else _values(tuple(values))
        col["members"] = str(prof.size)
        col["optimizer"] = t.optimizer
        col["learning rate"] = "grid axis" if "lr" in grid else f"{t.lr:g}"
        if t.batch_size is not None and "batch_size" not in grid:
            col["batch size"] = str(t.batch_size)
        if t.optimizer == "sgd":
            col["momentum"] = f"{t.momentum:g}"
        col["weight decay"] = f"{t.weight_decay:g}"
        col["scheduler"] = ", ".join(f"{k}={v}" for k, v in t.scheduler.items())
        col["epochs"] = str(t.epochs)
        col["initialisation"] = t.init
        col["augmentation"] = _augmentation(t.augmentation)
        col["checkpoints"] = "epochs " + _values(t.checkpoint_epochs)
        if t.optimizer_options:
            col["optimizer options"] = ", ".join(f"{k}={v}" for k, v in t.optimizer_options.items())
        columns[spec.name] = col
    return pd.DataFrame(columns).fillna("")
